"""The reference model: DESIGN.md's "Reads" and "Actions" tables, in plain Python sets.

Written from DESIGN.md, never from policies/policy.csv or the code: it never imports the
policy, the scopes or a resolver. Where DESIGN.md is terse, the interpretation used is the
decided one, quoted where it is applied:

- staff = a user with a membership holding at least one role other than LEARNER. `staff`:
  SUPER_ADMIN, ADMIN, SENIOR_ASSESSOR and MANAGER see every staff member of their
  organisation (a person whose only membership there is LEARNER is not staff there);
  ASSESSOR and TRAINING_COORDINATOR see themselves; LEARNER and EXTERNAL_ASSESSOR see none;
  SUPPORT sees every user who is staff of any organisation.
- `node(id:)` on a User is visible iff the user is in the caller's staff scope or in the
  caller's external-assessor-directory scope (no "self" exception: `viewer` shows yourself).
- external assessor directory: SUPER_ADMIN, ADMIN, MANAGER, SUPPORT: all external
  assessors; SENIOR_ASSESSOR: those with an active, unexpired allocation to a learner of the
  organisation; others none.
- organisation, location, department: SUPPORT all; every membership role (LEARNER too) their
  own organisation; EXTERNAL_ASSESSOR none.
- audit events: SUPER_ADMIN and ADMIN: events of their organisation; SUPPORT: events whose
  actor is a support user; everyone else none.
- allocations: SUPER_ADMIN, ADMIN, SENIOR_ASSESSOR: all of the organisation (any state);
  MANAGER: of team learners (any state); ASSESSOR, TRAINING_COORDINATOR: of the learners
  they see (any state); EXTERNAL_ASSESSOR: their own that are active and unexpired;
  LEARNER: those of their own learner (any state). `Learner.allocations` shows only active,
  unexpired ones.
- assignments and evidence are visible exactly when their record is;
  `ApprenticeRecord.assignments` shows the active ones. `Learner.assessors` = the users of
  active assignments on the learner's records the caller sees, and the assessors of active,
  unexpired allocations the caller sees.
- `User.caseloadCount` = that user's active assignments on LIVE records the caller can see
  (an archived record is no longer work).
- `Learner.access`: SUPER_ADMIN and ADMIN of the learner's organisation and the learner
  themself; it lists every principal who can read the learner, API keys included.
- a membership deactivated in an organisation signs in there no more (its token is refused)
  and grants nothing there; its assignments there have ended. `staff` lists active staff
  (`deactivated: true`: those deactivated there); `node(id:)` still shows them.
- licences: those of the learners the caller sees (so support none); `Learner.licences` all
  of the learner's. Course catalogue: every role but EXTERNAL_ASSESSOR. `Course.pool`: the
  caller's organisation's pool, for SUPER_ADMIN, ADMIN and MANAGER (support acts in no
  organisation: none). Auto-allocation rules: SUPER_ADMIN and ADMIN, their organisation's
  (`node(id:)` deleted ones too; `autoAllocationRules` those in force). API keys: SUPER_ADMIN,
  their organisation's, revoked ones too.
- objects shown on a visible object: DESIGN.md shows "people, units, organisations and
  courses" because the object is visible; anything else goes through its own row of the
  Reads table. So a visible licence shows its course, and the rule that issued it only to
  those who read rules (SUPER_ADMIN and ADMIN of the rule's organisation): null for everyone
  else. A visible audit event shows an actor only when no key acted, and its API key only to
  those who read API keys (SUPER_ADMIN of the key's organisation). `Learner.access` lists a
  key's entry (its identity as the user) for everyone who reads the learner's access; the
  key itself only to those who read API keys.
- `organisations`: support all, everyone acting in an organisation that one. `evidence`
  (the work queue): evidence the caller sees on LIVE records. `auditEvents`: as `node(id:)`.
- filters: `assigneeId: X` = learners the caller sees with a LIVE record the caller sees
  that has an active assignment to X ("lists and filters default to LIVE records"); an X
  the caller cannot see as a User matches nothing, exactly like a made-up id.
  `unassigned: true` = no active ASSESSOR assignment on a LIVE record the caller sees.
  Likewise for `apprenticeRecords(filter: {assigneeId, unassigned, learnerId})`.

Roles hold the union of their rows (DESIGN.md: "A user with several roles gets the union").
An API key acts with its roles in its organisation; it is nobody's team manager (no units)
and has no assignments, and its identity is not a staff member.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from db.models import AssignmentRole
from tests.authz.world import (
    ADMIN,
    ASSESSOR,
    COORDINATOR,
    EXTERNAL_ASSESSOR,
    LEARNER,
    MANAGER,
    SENIOR,
    SUPER_ADMIN,
    SUPPORT,
    Facts,
    LearnerFact,
    RecordFact,
    Who,
)

# Columns of DESIGN.md's Reads table.
WHOLE_ORGANISATION = frozenset({SUPER_ADMIN, ADMIN, SENIOR})
ASSIGNED_ROLES = frozenset({ASSESSOR, COORDINATOR})
ADMINS = frozenset({SUPER_ADMIN, ADMIN})
MEMBERSHIP_ROLES = frozenset({SUPER_ADMIN, ADMIN, SENIOR, MANAGER, ASSESSOR, COORDINATOR, LEARNER})
ROLE_ORDER = (
    SUPER_ADMIN,
    ADMIN,
    SENIOR,
    MANAGER,
    ASSESSOR,
    COORDINATOR,
    LEARNER,
    EXTERNAL_ASSESSOR,
    SUPPORT,
)

# Actions table: which roles hold each action at all (anyone else: top-level FORBIDDEN).
ACTION_ROLES: dict[str, frozenset[str]] = {
    "createOrganisation": frozenset({SUPPORT}),
    "createExternalAssessor": frozenset({SUPPORT}),
    "updateExternalAssessor": frozenset({SUPPORT}),
    "createStaffMember": frozenset({SUPPORT, SUPER_ADMIN, ADMIN}),
    "createLocation": frozenset({SUPPORT, SUPER_ADMIN, ADMIN}),
    "createDepartment": frozenset({SUPPORT, SUPER_ADMIN, ADMIN}),
    "createLearner": ADMINS,
    "createApprenticeRecord": ADMINS,
    "assignRecords": WHOLE_ORGANISATION,
    "unassignRecords": WHOLE_ORGANISATION,
    "assignTrainingCoordinator": WHOLE_ORGANISATION,
    "allocateAssessor": ADMINS | {MANAGER},
    "deallocateAssessor": ADMINS | {MANAGER},
    "submitEvidence": ADMINS | {LEARNER},
    "signOffEvidence": WHOLE_ORGANISATION | ASSIGNED_ROLES | {EXTERNAL_ASSESSOR},
    "updateLearner": ADMINS,
    "importLearners": ADMINS,
    "updateStaffMember": ADMINS | {SUPPORT},
    "deactivateStaffMember": ADMINS,
    "archiveApprenticeRecord": ADMINS,
    "restoreApprenticeRecord": ADMINS,
    "allocateLicences": ADMINS | {MANAGER},
    "recallLicences": ADMINS | {MANAGER},
    "markLicenceLaunched": ADMINS | {LEARNER},
    "markLicenceCompleted": ADMINS | {LEARNER},
    "createAutoAllocationRule": ADMINS,
    "previewAutoAllocationRule": ADMINS,
    "deleteAutoAllocationRule": ADMINS,
    "createApiKey": frozenset({SUPER_ADMIN}),
    "revokeApiKey": frozenset({SUPER_ADMIN}),
    "createWebhookEndpoint": frozenset({SUPER_ADMIN}),
    "updateWebhookEndpoint": frozenset({SUPER_ADMIN}),
    "deleteWebhookEndpoint": frozenset({SUPER_ADMIN}),
    "rotateWebhookSecret": frozenset({SUPER_ADMIN}),
    "redeliverWebhook": frozenset({SUPER_ADMIN}),
    "createCourse": frozenset({SUPPORT}),
    "setLicencePool": frozenset({SUPPORT}),
    # "bind or remove an organisation's identity provider | SUPPORT"
    "setOrganisationIdentityProvider": frozenset({SUPPORT}),
    "removeOrganisationIdentityProvider": frozenset({SUPPORT}),
    "Learner.access": ADMINS | {LEARNER},
}


@dataclass(frozen=True)
class AccessEntry:
    """One line of `Learner.access`: a person (`user`) or an API key (`api_key`)."""

    who: tuple[str, int]  # ("user", user id) or ("api_key", key id)
    role: str
    reason: str
    expires_at: datetime | None


class Model:
    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self.now = facts.now
        self.learner = {lf.id: lf for lf in facts.learners}
        self.record = {r.id: r for r in facts.records}
        self.records_of: defaultdict[int, set[int]] = defaultdict(set)
        for r in facts.records:
            self.records_of[r.learner_id].add(r.id)
        self.evidence_record = {e.id: e.record_id for e in facts.evidence}
        self.assignment = {a.id: a for a in facts.assignments}
        self.allocation = {a.id: a for a in facts.allocations}
        self.evidence_row = {e.id: e for e in facts.evidence}
        self.audit_row = {e.id: e for e in facts.audit}
        self.licence = {x.id: x for x in facts.licences}
        self.rule = {x.id: x for x in facts.rules}
        self.api_key = {k.id: k for k in facts.api_keys}
        self.deactivated = {
            (m.user_id, m.organisation_id) for m in facts.memberships if m.deactivated
        }
        self.organisation = {o.id: o for o in facts.organisations}
        self.evidence_of: defaultdict[int, set[int]] = defaultdict(set)
        for e in facts.evidence:
            self.evidence_of[e.record_id].add(e.id)
        self.active_on: defaultdict[int, list[tuple[int, AssignmentRole]]] = defaultdict(list)
        for a in facts.assignments:
            if not a.ended:
                self.active_on[a.record_id].append((a.user_id, a.role))
        self._cache: dict[tuple[str, Who], frozenset[int]] = {}

    # --- helpers --------------------------------------------------------------------------

    def _memo(self, name: str, who: Who, compute: Callable[[], Iterable[int]]) -> frozenset[int]:
        """Each set is computed once per principal."""
        key = (name, who)
        if key not in self._cache:
            self._cache[key] = frozenset(compute())
        return self._cache[key]

    def in_team(self, who: Who, learner: LearnerFact) -> bool:
        """DESIGN.md: team = learners matching every unit set on the manager's membership;
        neither set: nobody."""
        if who.location_id is None and who.department_id is None:
            return False
        return (
            learner.organisation_id == who.organisation_id
            and (who.location_id is None or learner.location_id == who.location_id)
            and (who.department_id is None or learner.department_id == who.department_id)
        )

    def assigned_records(self, who: Who) -> frozenset[int]:
        """Records with an active assignment to the principal, in the organisation they act in."""
        return self._memo(
            "assigned",
            who,
            lambda: (
                a.record_id
                for a in self.facts.assignments
                if a.user_id == who.user_id
                and not a.ended
                and a.organisation_id == who.organisation_id
                and who.kind != "API_KEY"
            ),
        )

    def allocated_learners(self, who: Who) -> frozenset[int]:
        """Learners with an active, unexpired allocation to the principal (any organisation)."""
        return self._memo(
            "allocated",
            who,
            lambda: (
                a.learner_id
                for a in self.facts.allocations
                if a.assessor_id == who.user_id and a.grants(self.now)
            ),
        )

    def own_learners(self, who: Who) -> frozenset[int]:
        return frozenset(
            lf.id
            for lf in self.facts.learners
            if who.kind == "STAFF"
            and lf.user_id == who.user_id
            and lf.organisation_id == who.organisation_id
        )

    def records_of_learners(self, learners: Iterable[int]) -> set[int]:
        return {r for lf in learners for r in self.records_of[lf]}

    # --- Reads: learners, apprentice records ----------------------------------------------

    def learners(self, who: Who) -> frozenset[int]:
        def compute() -> set[int]:
            seen: set[int] = set()
            if who.roles & WHOLE_ORGANISATION:
                seen |= {
                    lf.id for lf in self.facts.learners if lf.organisation_id == who.organisation_id
                }
            if MANAGER in who.roles:
                seen |= {lf.id for lf in self.facts.learners if self.in_team(who, lf)}
            if who.roles & ASSIGNED_ROLES:
                seen |= {self.record[r].learner_id for r in self.assigned_records(who)}
            if EXTERNAL_ASSESSOR in who.roles:
                seen |= self.allocated_learners(who)
            if LEARNER in who.roles:
                seen |= self.own_learners(who)
            return seen

        return self._memo("learners", who, compute)

    def records(self, who: Who) -> frozenset[int]:
        def compute() -> set[int]:
            seen: set[int] = set()
            if who.roles & WHOLE_ORGANISATION:
                seen |= {
                    r.id for r in self.facts.records if r.organisation_id == who.organisation_id
                }
            if MANAGER in who.roles:
                team = [lf.id for lf in self.facts.learners if self.in_team(who, lf)]
                seen |= self.records_of_learners(team)
            if who.roles & ASSIGNED_ROLES:
                seen |= self.assigned_records(who)
            if EXTERNAL_ASSESSOR in who.roles:
                seen |= self.records_of_learners(self.allocated_learners(who))
            if LEARNER in who.roles:
                seen |= self.records_of_learners(self.own_learners(who))
            return seen

        return self._memo("records", who, compute)

    # --- Reads: assignments, evidence, allocations ----------------------------------------

    def assignments(self, who: Who) -> frozenset[int]:
        records = self.records(who)
        return self._memo(
            "assignments",
            who,
            lambda: (a.id for a in self.facts.assignments if a.record_id in records),
        )

    def evidence(self, who: Who) -> frozenset[int]:
        records = self.records(who)
        return self._memo(
            "evidence",
            who,
            lambda: (e.id for e in self.facts.evidence if e.record_id in records),
        )

    def allocations(self, who: Who) -> frozenset[int]:
        def compute() -> set[int]:
            seen: set[int] = set()
            for a in self.facts.allocations:
                learner = self.learner[a.learner_id]
                if (
                    (who.roles & WHOLE_ORGANISATION and a.organisation_id == who.organisation_id)
                    or (MANAGER in who.roles and self.in_team(who, learner))
                    or (
                        who.roles & ASSIGNED_ROLES
                        and self.records_of[a.learner_id] & self.assigned_records(who)
                    )
                    or (
                        EXTERNAL_ASSESSOR in who.roles
                        and a.assessor_id == who.user_id
                        and a.grants(self.now)
                    )
                    or (LEARNER in who.roles and a.learner_id in self.own_learners(who))
                ):
                    seen.add(a.id)
            return seen

        return self._memo("allocations", who, compute)

    # --- Reads: people ----------------------------------------------------------------------

    @cached_property
    def staff_of(self) -> dict[int, frozenset[int]]:
        """Organisation id → its staff: members holding a role other than LEARNER."""
        found: defaultdict[int, set[int]] = defaultdict(set)
        for m in self.facts.memberships:
            if m.roles - {LEARNER}:
                found[m.organisation_id].add(m.user_id)
        return {org: frozenset(users) for org, users in found.items()}

    @cached_property
    def externals(self) -> frozenset[int]:
        return frozenset(u.id for u in self.facts.users.values() if u.kind == EXTERNAL_ASSESSOR)

    def staff(self, who: Who) -> frozenset[int]:
        def compute() -> set[int]:
            seen: set[int] = set()
            if SUPPORT in who.roles:
                seen |= {u for users in self.staff_of.values() for u in users}
            if who.roles & (WHOLE_ORGANISATION | {MANAGER}) and who.organisation_id:
                seen |= self.staff_of.get(who.organisation_id, frozenset())
            if who.roles & ASSIGNED_ROLES and who.kind == "STAFF":
                seen.add(who.user_id)
            return seen

        return self._memo("staff", who, compute)

    def directory(self, who: Who) -> frozenset[int]:
        def compute() -> set[int]:
            if who.roles & (ADMINS | {MANAGER, SUPPORT}):
                return set(self.externals)
            if SENIOR in who.roles:
                return {
                    a.assessor_id
                    for a in self.facts.allocations
                    if a.organisation_id == who.organisation_id and a.grants(self.now)
                }
            return set()

        return self._memo("directory", who, compute)

    def users(self, who: Who) -> frozenset[int]:
        """Users `node(id:)` shows: staff scope or directory scope, no "self" exception."""
        return self.staff(who) | self.directory(who)

    # --- Reads: organisation and units, audit events ------------------------------------------

    def organisations(self, who: Who) -> frozenset[int]:
        if SUPPORT in who.roles:
            return frozenset(o.id for o in self.facts.organisations)
        if who.roles & MEMBERSHIP_ROLES and who.organisation_id is not None:
            return frozenset({who.organisation_id})
        return frozenset()

    def locations(self, who: Who) -> frozenset[int]:
        orgs = self.organisations(who)
        return frozenset(x for o in self.facts.organisations if o.id in orgs for x in o.locations)

    def departments(self, who: Who) -> frozenset[int]:
        orgs = self.organisations(who)
        return frozenset(x for o in self.facts.organisations if o.id in orgs for x in o.departments)

    # --- Reads: licences, courses, pools, rules, API keys --------------------------------------

    def licences(self, who: Who) -> frozenset[int]:
        learners = self.learners(who)
        return self._memo(
            "licences", who, lambda: (x.id for x in self.facts.licences if x.learner_id in learners)
        )

    def courses(self, who: Who) -> frozenset[int]:
        return frozenset(self.facts.courses) if who.roles - {EXTERNAL_ASSESSOR} else frozenset()

    def pool_shown(self, who: Who, course: int) -> bool:
        """`Course.pool`: the caller's organisation's pool for the course."""
        return bool(
            who.organisation_id is not None
            and who.roles & (ADMINS | {MANAGER})
            and any(
                p.organisation_id == who.organisation_id and p.course_id == course
                for p in self.facts.pools
            )
        )

    def pools(self, who: Who) -> frozenset[int]:
        """Licence pools: the organisation's for SUPER_ADMIN, ADMIN and MANAGER; SUPPORT all."""
        return frozenset(
            p.id
            for p in self.facts.pools
            if SUPPORT in who.roles
            or (who.roles & (ADMINS | {MANAGER}) and p.organisation_id == who.organisation_id)
        )

    def changes(self, who: Who) -> list[tuple[str, int]]:
        """The change feed, in commit order: DESIGN.md, Reads, row "changes": changes "on
        objects they see" (as `node(id:)` shows them; licence pools as the Reads table's row
        of pools); SUPPORT: "organisations, staff, courses, pools" (staff: users who are staff
        of an organisation, so no external assessor)."""
        seen = self.visible(who) | {"LicencePool": self.pools(who)}
        if SUPPORT in who.roles:
            seen = {
                "Organisation": seen["Organisation"],
                "User": self.staff(who),
                "Course": seen["Course"],
                "LicencePool": seen["LicencePool"],
            }
        return [(t, pk) for t, pk in self.facts.changes if pk in seen.get(t, frozenset())]

    def rules(self, who: Who) -> frozenset[int]:
        if not who.roles & ADMINS:
            return frozenset()
        return frozenset(r.id for r in self.facts.rules if r.organisation_id == who.organisation_id)

    def rules_in_force(self, who: Who) -> frozenset[int]:
        return frozenset(pk for pk in self.rules(who) if not self.rule[pk].deleted)

    def api_keys(self, who: Who) -> frozenset[int]:
        if SUPER_ADMIN not in who.roles:
            return frozenset()
        return frozenset(
            k.id for k in self.facts.api_keys if k.organisation_id == who.organisation_id
        )

    def webhook_endpoints(self, who: Who) -> frozenset[int]:
        """Reads, "webhook endpoints and deliveries": SUPER_ADMIN only, org."""
        if SUPER_ADMIN not in who.roles:
            return frozenset()
        return frozenset(
            w.id for w in self.facts.webhook_endpoints if w.organisation_id == who.organisation_id
        )

    def webhook_deliveries(self, who: Who) -> frozenset[int]:
        if SUPER_ADMIN not in who.roles:
            return frozenset()
        return frozenset(
            d.id for d in self.facts.webhook_deliveries if d.organisation_id == who.organisation_id
        )

    def licence_rule(self, who: Who, licence: int) -> int | None:
        """`Licence.rule` of a visible licence: the rule, if the caller reads rules."""
        rule = self.licence[licence].rule_id
        return rule if rule in self.rules(who) else None

    def key_shown(self, who: Who, key: int | None) -> int | None:
        """An API key named on a visible object (`AuditEvent.apiKey`, `LearnerAccess.apiKey`):
        shown if the caller reads API keys."""
        return key if key in self.api_keys(who) else None

    def audit_events(self, who: Who) -> frozenset[int]:
        supports = {u.id for u in self.facts.users.values() if u.kind == SUPPORT}
        return frozenset(
            e.id
            for e in self.facts.audit
            if (who.roles & ADMINS and e.organisation_id == who.organisation_id)
            or (SUPPORT in who.roles and e.actor_id in supports)
        )

    def visible(self, who: Who) -> dict[str, frozenset[int]]:
        """Node type → primary keys `node(id:)` answers for this principal."""
        return {
            "Organisation": self.organisations(who),
            "Location": self.locations(who),
            "Department": self.departments(who),
            "User": self.users(who),
            "Learner": self.learners(who),
            "ApprenticeRecord": self.records(who),
            "Assignment": self.assignments(who),
            "Allocation": self.allocations(who),
            "Evidence": self.evidence(who),
            "AuditEvent": self.audit_events(who),
            "Licence": self.licences(who),
            "Course": self.courses(who),
            "AutoAllocationRule": self.rules(who),
            "ApiKey": self.api_keys(who),
            "WebhookEndpoint": self.webhook_endpoints(who),
            "WebhookDelivery": self.webhook_deliveries(who),
        }

    # --- Lists and filters ---------------------------------------------------------------------

    def learner_list(
        self,
        who: Who,
        *,
        search: str | None = None,
        location: int | None = None,
        department: int | None = None,
        assigned_to: int | None = None,
        unassigned: bool | None = None,
    ) -> frozenset[int]:
        """`learners(filter:)`; a made-up or invisible id is passed as an id nobody has."""
        found = set()
        records = self.records(who)
        for pk in self.learners(who):
            lf = self.learner[pk]
            mine = self.records_of[pk] & records
            if search is not None and not matches(search, lf.name, lf.email):
                continue
            if location is not None and lf.location_id != location:
                continue
            if department is not None and lf.department_id != department:
                continue
            if assigned_to is not None and not (
                assigned_to in self.users(who)
                and any(
                    self.record[r].live and self.active_assignment(r, user=assigned_to)
                    for r in mine
                )
            ):
                continue
            if unassigned is not None:
                has = any(
                    self.record[r].live and self.active_assignment(r, role=AssignmentRole.ASSESSOR)
                    for r in mine
                )
                if has == unassigned:
                    continue
            found.add(pk)
        return frozenset(found)

    def record_list(
        self,
        who: Who,
        *,
        search: str | None = None,
        assignee: int | None = None,
        unassigned: bool | None = None,
        status: str | None = None,
        learner: int | None = None,
    ) -> frozenset[int]:
        """`apprenticeRecords(filter:)`: LIVE records unless a status is asked for."""
        found = set()
        for pk in self.records(who):
            r = self.record[pk]
            if status is None and not r.live:
                continue  # DESIGN.md: lists and filters default to LIVE records
            if status is not None and ("LIVE" if r.live else "ARCHIVED") != status:
                continue
            if search is not None and not (
                matches(search, r.programme) or matches(search, self.learner[r.learner_id].name)
            ):
                continue
            if assignee is not None and not (
                assignee in self.users(who) and self.active_assignment(pk, user=assignee)
            ):
                continue
            if unassigned is not None:
                has = r.live and self.active_assignment(pk, role=AssignmentRole.ASSESSOR)
                if has == unassigned:
                    continue
            if learner is not None and r.learner_id != learner:
                continue
            found.add(pk)
        return frozenset(found)

    def staff_list(
        self,
        who: Who,
        *,
        search: str | None = None,
        roles: frozenset[str] | None = None,
        deactivated: bool = False,
    ) -> frozenset[int]:
        """`staff(filter:)`: people with a staff membership in the caller's organisation
        (support: in any) that is active (`deactivated`: deactivated there); `roles` held
        there."""
        listed = {
            m.user_id
            for m in self.facts.memberships
            if m.roles - {LEARNER}
            and m.deactivated == deactivated
            and (who.organisation_id is None or m.organisation_id == who.organisation_id)
        }
        found = set()
        for pk in self.staff(who) & listed:
            user = self.facts.users[pk]
            if search is not None and not matches(search, user.name, user.email):
                continue
            if roles is not None:
                held = {
                    r
                    for m in self.facts.memberships
                    if m.user_id == pk
                    and (who.organisation_id is None or m.organisation_id == who.organisation_id)
                    for r in m.roles
                }
                if not held & roles:
                    continue
            found.add(pk)
        return frozenset(found)

    def directory_list(self, who: Who, *, search: str | None = None) -> frozenset[int]:
        return frozenset(
            pk
            for pk in self.directory(who)
            if search is None
            or matches(search, self.facts.users[pk].name, self.facts.users[pk].email)
        )

    def active_assignment(
        self, record: int, *, user: int | None = None, role: AssignmentRole | None = None
    ) -> bool:
        return any(
            (user is None or holder == user) and (role is None or held is role)
            for holder, held in self.active_on[record]
        )

    # --- Nested fields of visible objects ------------------------------------------------------

    def learner_records(self, who: Who, learner: int) -> frozenset[int]:
        return frozenset(self.records_of[learner] & self.records(who))

    def learner_allocations(
        self, who: Who, learner: int, *, include_ended: bool = False
    ) -> frozenset[int]:
        """Active, unexpired allocations of the learner that the caller sees (`includeEnded`:
        every one the caller sees)."""
        visible = self.allocations(who)
        return frozenset(
            a.id
            for a in self.facts.allocations
            if a.learner_id == learner and a.id in visible and (include_ended or a.grants(self.now))
        )

    def learner_assessors(self, who: Who, learner: int) -> frozenset[int]:
        records = self.learner_records(who, learner)
        assigned = {
            a.user_id for a in self.facts.assignments if a.record_id in records and not a.ended
        }
        allocated = {
            a.assessor_id
            for a in self.facts.allocations
            if a.id in self.learner_allocations(who, learner)
        }
        return frozenset(assigned | allocated)

    def learner_licences(self, learner: int, status: str | None = None) -> frozenset[int]:
        return frozenset(
            x.id
            for x in self.facts.licences
            if x.learner_id == learner and (status is None or x.status.value == status)
        )

    def licence_list(
        self,
        who: Who,
        *,
        course: int | None = None,
        learner: int | None = None,
        status: str | None = None,
    ) -> frozenset[int]:
        """`licences(filter:)`: a course or learner the caller cannot see matches nothing."""
        found = set()
        for pk in self.licences(who):
            x = self.licence[pk]
            if course is not None and (x.course_id != course or course not in self.courses(who)):
                continue
            if learner is not None and x.learner_id != learner:
                continue
            if status is not None and x.status.value != status:
                continue
            found.add(pk)
        return frozenset(found)

    def evidence_queue(
        self,
        who: Who,
        *,
        status: str | None = None,
        learner: int | None = None,
        record: int | None = None,
    ) -> frozenset[int]:
        """`evidence(filter:)`: the caller's evidence on LIVE records."""
        found = set()
        for pk in self.evidence(who):
            row = self.evidence_row[pk]
            r = self.record[row.record_id]
            if not r.live:
                continue
            if status is not None and row.status != status:
                continue
            if learner is not None and r.learner_id != learner:
                continue
            if record is not None and r.id != record:
                continue
            found.add(pk)
        return frozenset(found)

    def learner_evidence(self, who: Who, learner: int) -> frozenset[int]:
        return frozenset(e for r in self.learner_records(who, learner) for e in self.evidence_of[r])

    def record_assignments(self, record: int, *, include_ended: bool = False) -> frozenset[int]:
        """Active assignments on a visible record (all of them are visible with it;
        `includeEnded`: ended ones too)."""
        return frozenset(
            a.id
            for a in self.facts.assignments
            if a.record_id == record and (include_ended or not a.ended)
        )

    def record_evidence(self, record: int) -> frozenset[int]:
        return frozenset(self.evidence_of[record])

    def caseload(self, who: Who, user: int) -> int:
        records = self.records(who)
        return sum(
            1
            for a in self.facts.assignments
            if a.user_id == user
            and not a.ended
            and a.record_id in records
            and self.record[a.record_id].live
        )

    def roles_of(self, who: Who, user: int) -> list[str]:
        """`User.roles`: the person's roles in the caller's organisation."""
        kind = self.facts.users[user].kind
        if kind in (EXTERNAL_ASSESSOR, SUPPORT):
            return [kind]
        held = {
            r
            for m in self.facts.memberships
            if m.user_id == user and m.organisation_id == who.organisation_id
            for r in m.roles
        }
        return [r for r in ROLE_ORDER if r in held]

    # --- Learner.access ------------------------------------------------------------------------

    def reads_access(self, who: Who, learner: LearnerFact) -> bool:
        """Reads table, "who can see this learner": SUPER_ADMIN and ADMIN of the learner's
        organisation, and the learner themself."""
        return bool(
            who.organisation_id == learner.organisation_id
            and (
                who.roles & ADMINS
                or (LEARNER in who.roles and learner.id in self.own_learners(who))
            )
        )

    @cached_property
    def principals(self) -> list[Who]:
        return self.facts.principals()

    def access(self, learner: LearnerFact) -> frozenset[AccessEntry]:
        """Every principal who can read the learner, one entry per role that grants it."""
        entries = set()
        for who in self.principals:
            if not who.signs_in or learner.id not in self.learners(who):
                continue
            subject = ("api_key", who.api_key_id) if who.api_key_id else ("user", who.user_id)
            for role in who.roles:
                reason = self.reason(who, role, learner)
                if reason is None:
                    continue
                expires = None
                if reason == "ALLOCATED":
                    (expires,) = [
                        a.expires_at
                        for a in self.facts.allocations
                        if a.learner_id == learner.id
                        and a.assessor_id == who.user_id
                        and a.grants(self.now)
                    ]
                entries.add(AccessEntry(subject, role, reason, expires))
        return frozenset(entries)

    def reason(self, who: Who, role: str, learner: LearnerFact) -> str | None:
        """Why `role` lets `who` read the learner (the AccessReason), if it does."""
        single = Who(
            who.kind,
            who.user_id,
            who.organisation_id,
            frozenset({role}),
            who.location_id,
            who.department_id,
            who.api_key_id,
        )
        if learner.id not in self.learners(single):
            return None
        return {
            SUPER_ADMIN: "ORGANISATION",
            ADMIN: "ORGANISATION",
            SENIOR: "ORGANISATION",
            MANAGER: "TEAM",
            ASSESSOR: "ASSIGNED",
            COORDINATOR: "ASSIGNED",
            EXTERNAL_ASSESSOR: "ALLOCATED",
            LEARNER: "SELF",
        }[role]

    # --- Actions table -------------------------------------------------------------------------

    def holds(self, who: Who, operation: str) -> bool:
        return bool(who.roles & ACTION_ROLES[operation])

    def may_allocate(self, who: Who, learner: LearnerFact) -> bool:
        """ADMIN (org), MANAGER (team)."""
        return bool(
            (who.roles & ADMINS and learner.organisation_id == who.organisation_id)
            or (MANAGER in who.roles and self.in_team(who, learner))
        )

    def may_submit(self, who: Who, record: RecordFact) -> bool:
        """LEARNER (own records), ADMIN (on a learner's behalf, org)."""
        return bool(
            (who.roles & ADMINS and record.organisation_id == who.organisation_id)
            or (LEARNER in who.roles and record.learner_id in self.own_learners(who))
        )

    def may_decide(self, who: Who, evidence_id: int) -> bool:
        """ADMIN, SENIOR_ASSESSOR (org); ASSESSOR, TRAINING_COORDINATOR (their records);
        EXTERNAL_ASSESSOR (allocated learners)."""
        record = self.record[self.evidence_record[evidence_id]]
        return bool(
            (who.roles & WHOLE_ORGANISATION and record.organisation_id == who.organisation_id)
            or (who.roles & ASSIGNED_ROLES and record.id in self.assigned_records(who))
            or (
                EXTERNAL_ASSESSOR in who.roles and record.learner_id in self.allocated_learners(who)
            )
        )

    def may_assign(self, who: Who, record: RecordFact) -> bool:
        """ADMIN, SENIOR_ASSESSOR (org)."""
        return bool(
            who.roles & WHOLE_ORGANISATION and record.organisation_id == who.organisation_id
        )

    def may_create_in(self, who: Who, organisation_id: int) -> bool:
        """Staff members, locations, departments: SUPPORT (any organisation), ADMIN (org)."""
        return bool(
            SUPPORT in who.roles or (who.roles & ADMINS and organisation_id == who.organisation_id)
        )

    def may_change_staff(self, who: Who, user: int) -> bool:
        """Update or deactivate a staff member: ADMIN (org); update: SUPPORT too."""
        return bool(
            SUPPORT in who.roles
            or (who.roles & ADMINS and user in self.staff_of.get(who.organisation_id or 0, ()))
        )

    def may_allocate_licences(self, who: Who, learner: LearnerFact) -> bool:
        """Allocate and recall licences: ADMIN (org), MANAGER (team)."""
        return self.may_allocate(who, learner)

    def may_launch(self, who: Who, licence: int) -> bool:
        """Mark a licence launched: LEARNER (own), ADMIN (org)."""
        x = self.licence[licence]
        return bool(
            (who.roles & ADMINS and x.organisation_id == who.organisation_id)
            or (LEARNER in who.roles and x.learner_id in self.own_learners(who))
        )

    def may_complete(self, who: Who, licence: int) -> bool:
        """Mark a licence completed: LEARNER (own), ADMIN (org)."""
        x = self.licence[licence]
        return bool(
            (who.roles & ADMINS and x.organisation_id == who.organisation_id)
            or (LEARNER in who.roles and x.learner_id in self.own_learners(who))
        )

    def holds_active_licence(self, learner: int, course: int) -> bool:
        return any(
            x.learner_id == learner and x.course_id == course and x.status.value == "ACTIVE"
            for x in self.facts.licences
        )

    def launched(self, licence: int) -> bool:
        return self.licence[licence].launched

    def may_create_record(self, who: Who, learner: LearnerFact) -> bool:
        """ADMIN (org)."""
        return bool(who.roles & ADMINS and learner.organisation_id == who.organisation_id)


def matches(search: str, *values: str | None) -> bool:
    """Case-insensitive substring of any value (blank searches match everything)."""
    term = search.strip().lower()
    return not term or any(v is not None and term in v.lower() for v in values)


# --- Capabilities (`viewerCan`, `Viewer.can`) ---------------------------------------------
# From the Actions table, with DESIGN.md's state rules: an archived record takes no new
# assignments or evidence; only a licence never launched can be recalled; only an active one
# launched or completed; decided evidence is locked. A repeat answered "unchanged" is no
# refusal: archiving an archived record, restoring a live one, completing a completed licence,
# recalling a recalled one, revoking a revoked key, deleting a deleted rule are all allowed.

CAPABILITY_FLAGS: dict[str, tuple[str, ...]] = {
    "Learner": ("update", "allocateAssessor", "allocateLicence"),
    "ApprenticeRecord": ("assign", "submitEvidence", "archive", "restore"),
    "Evidence": ("decide",),
    "Licence": ("recall", "launch", "complete"),
    "Course": ("allocate",),
    "ApiKey": ("revoke",),
    "AutoAllocationRule": ("delete",),
    "User": ("update", "deactivate"),
    "Allocation": ("deallocate",),
    "Assignment": ("unassign",),
}
# Each flag's mutation (the operation that must be held at all).
FLAG_OPERATIONS: dict[tuple[str, str], str] = {
    ("Learner", "update"): "updateLearner",
    ("Learner", "allocateAssessor"): "allocateAssessor",
    ("Learner", "allocateLicence"): "allocateLicences",
    ("ApprenticeRecord", "assign"): "assignRecords",
    ("ApprenticeRecord", "submitEvidence"): "submitEvidence",
    ("ApprenticeRecord", "archive"): "archiveApprenticeRecord",
    ("ApprenticeRecord", "restore"): "restoreApprenticeRecord",
    ("Evidence", "decide"): "signOffEvidence",
    ("Licence", "recall"): "recallLicences",
    ("Licence", "launch"): "markLicenceLaunched",
    ("Licence", "complete"): "markLicenceCompleted",
    ("Course", "allocate"): "allocateLicences",
    ("ApiKey", "revoke"): "revokeApiKey",
    ("AutoAllocationRule", "delete"): "deleteAutoAllocationRule",
    ("User", "update"): "updateStaffMember",
    ("User", "deactivate"): "deactivateStaffMember",
    ("Allocation", "deallocate"): "deallocateAssessor",
    ("Assignment", "unassign"): "unassignRecords",
}
VIEWER_CAN = (
    "createOrganisation",
    "createLocation",
    "createDepartment",
    "createStaffMember",
    "createExternalAssessor",
    "createLearner",
    "importLearners",
    "createApprenticeRecord",
    "createCourse",
    "setLicencePool",
    "createAutoAllocationRule",
    "createApiKey",
)


def may(model: Model, who: Who, type_name: str, flag: str, pk: int) -> bool:
    """Whether `flag`'s mutation on this object, visible or not, would be accepted."""
    if not model.holds(who, FLAG_OPERATIONS[(type_name, flag)]):
        return False
    # A person is a mutation's target as a staff member (the staff scope, not the directory).
    seen = model.staff(who) if type_name == "User" else model.visible(who)[type_name]
    if pk not in seen:
        return False
    if type_name == "Learner":
        lf = model.learner[pk]
        return {
            "update": lambda: model.may_create_record(who, lf),  # ADMIN (org)
            "allocateAssessor": lambda: model.may_allocate(who, lf),
            "allocateLicence": lambda: model.may_allocate_licences(who, lf),
        }[flag]()
    if type_name == "ApprenticeRecord":
        r = model.record[pk]
        return {
            "assign": lambda: r.live and model.may_assign(who, r),
            "submitEvidence": lambda: r.live and model.may_submit(who, r),
            "archive": lambda: model.may_create_record(who, model.learner[r.learner_id]),
            "restore": lambda: model.may_create_record(who, model.learner[r.learner_id]),
        }[flag]()
    if type_name == "Evidence":
        e = model.evidence_row[pk]
        live = model.record[e.record_id].live
        return live and e.status == "SUBMITTED" and model.may_decide(who, pk)
    if type_name == "Licence":
        x = model.licence[pk]
        status = x.status.value
        return {
            "recall": lambda: (
                not x.launched
                and status in ("ACTIVE", "RECALLED")
                and model.may_allocate_licences(who, model.learner[x.learner_id])
            ),
            "launch": lambda: status == "ACTIVE" and model.may_launch(who, pk),
            "complete": lambda: status in ("ACTIVE", "COMPLETED") and model.may_complete(who, pk),
        }[flag]()
    if type_name == "User":
        if not model.may_change_staff(who, pk):
            return False
        gone = (pk, who.organisation_id) in model.deactivated
        if flag == "update":  # admins change members still active here; support anyone
            return who.organisation_id is None or not gone
        # "only SUPPORT or a SUPER_ADMIN grants SUPER_ADMIN; the last active SUPER_ADMIN
        # cannot be demoted or deactivated"; deactivating again changes nothing
        if SUPER_ADMIN in model.roles_of(who, pk):
            if SUPER_ADMIN not in who.roles:
                return False
            others = {
                m.user_id
                for m in model.facts.memberships
                if m.organisation_id == who.organisation_id
                and SUPER_ADMIN in m.roles
                and not m.deactivated
                and m.user_id != pk
            }
            return gone or bool(others)
        return True
    if type_name == "Allocation":
        # deallocateAssessor(its learner, its assessor): the learner as a target of allocating
        # (ADMIN org, MANAGER team); one ended already is answered unchanged, no refusal.
        lf = model.learner[model.allocation[pk].learner_id]
        return lf.id in model.learners(who) and model.may_allocate(who, lf)
    if type_name == "Assignment":
        # unassignRecords(its record, assigneeId: its user, role: its role): the record as a
        # target of assigning (ADMIN, SENIOR_ASSESSOR org), live (an archived record takes no
        # change of assignments), and the assignee a person the caller can look up (else
        # NOT_FOUND); one ended already is answered unchanged.
        a = model.assignment[pk]
        r = model.record[a.record_id]
        return (
            r.id in model.records(who)
            and r.live
            and model.may_assign(who, r)
            and a.user_id in model.users(who)
        )
    if type_name == "Course":  # allocateLicences in the caller's organisation, with this course
        return who.organisation_id is not None
    return True  # an API key, a rule: held and visible (SUPER_ADMIN, ADMIN of its organisation)


def capabilities(model: Model, who: Who, type_name: str, pk: int) -> dict[str, bool]:
    return {flag: may(model, who, type_name, flag, pk) for flag in CAPABILITY_FLAGS[type_name]}


def viewer_can(model: Model, who: Who) -> dict[str, bool]:
    """Actions without a target: held at all (every role holding one acts in an organisation
    or, as support, in any)."""
    return {operation: model.holds(who, operation) for operation in VIEWER_CAN}
