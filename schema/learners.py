"""Learners: the list, one learner, who can see them, creation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Self

import strawberry

from db import models
from policies.vocabulary import Action, Resource, Scope
from resolvers import (
    access,
    allocations,
    api_keys,
    assignments,
    capabilities,
    evidence,
    learners,
    licences,
    records,
)
from resolvers.learners import LearnerLoaders
from resolvers.outcomes import AlreadyExists, BulkRejected
from resolvers.relations import RelationLoaders, related
from schema.api_keys import ApiKey
from schema.capabilities import VIEWER_CAN, LearnerCapabilities
from schema.connections import FILTER, connection
from schema.context import Info
from schema.derive import input_of, plain
from schema.enums import AuditAction, LicenceStatus, Role, describe_values
from schema.nodes import ById, Node, computed, maybe, node, project_all
from schema.people import AVATAR_URL, User, initials_of
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import answers, mutation, refused, unchanged

if TYPE_CHECKING:
    from schema.allocations import Allocation
    from schema.evidence import Evidence
    from schema.licences import Licence, WithheldLicence
    from schema.organisations import Department, Location, Organisation
    from schema.records import ApprenticeRecord

strawberry.enum(
    Scope,
    name="AccessReason",
    description="Why a person can see a learner: the policy scope that grants it.",
)
describe_values(
    Scope,
    {
        "ALL": "Every learner (support's scope for what it reads).",
        "ORGANISATION": "Every learner of their organisation (admins, senior assessors).",
        "TEAM": "A learner at the location and in the department of the manager's membership.",
        "ASSIGNED": "A learner with a record assigned to them (assessors, coordinators).",
        "ALLOCATED": "A learner allocated to them as external assessor.",
        "ALLOCATED_HERE": "External assessors allocated to a learner of the organisation (the "
        "senior assessors' directory).",
        "SELF": "The learner themself.",
        "BY_SUPPORT": "Support users' own actions (the audit trail).",
    },
)

LearnerFilter = input_of(learners.LearnerFilter)
LicenceFilter = input_of(licences.LicenceFilter)


@node(
    models.Learner,
    LearnerLoaders.learner,
    initials=computed(initials_of, "name"),
)
@strawberry.type(description="A person in an organisation who learns.")
class Learner(Node):
    name: str = strawberry.field(description="Full name.")
    email: str | None = strawberry.field(description="Email address, if known.")
    initials: str = strawberry.field(description="One or two letters for an avatar.")
    avatar_url: str | None = strawberry.field(
        description="Picture (an https URL), if the learner has one."
    )
    created_at: datetime = strawberry.field(description="When the learner was added.")
    row: strawberry.Private[models.Learner]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> LearnerCapabilities:
        return LearnerCapabilities(**await capabilities.of(info.context, self.row))

    organisation: Annotated[Organisation, strawberry.lazy("schema.organisations")] = relation(
        learners.ORGANISATION_OF_LEARNER,
        description="The learner's organisation (tells apart the learners of an external "
        "assessor allocated in several).",
        extensions=requires(Resource.LEARNER),
    )
    location: Annotated[Location, strawberry.lazy("schema.organisations")] | None = relation(
        learners.LOCATION_OF_LEARNER,
        description="The learner's location.",
        extensions=requires(Resource.LEARNER),
    )
    department: Annotated[Department, strawberry.lazy("schema.organisations")] | None = relation(
        learners.DEPARTMENT_OF_LEARNER,
        description="The learner's department.",
        extensions=requires(Resource.LEARNER),
    )
    records: list[Annotated[ApprenticeRecord, strawberry.lazy("schema.records")]] = relation(
        records.RECORDS_OF_LEARNER,
        description="The learner's apprentice records that the caller can see.",
        extensions=requires(Resource.RECORD),
    )
    assessors: list[User] = relation(
        assignments.ASSESSORS_OF_LEARNER,
        description="Everyone assigned to or allocated to this learner, as visible to the caller.",
        extensions=requires(Resource.ASSIGNMENT),
    )

    @strawberry.field(
        description="External assessor allocations the caller can see: the current ones, or "
        "with includeEnded every one, ended and expired too (endedAt, endedBy), newest first.",
        extensions=requires(Resource.ALLOCATION),
        metadata={"relation": allocations.ALLOCATIONS_OF_LEARNER},
    )
    async def allocations(
        self,
        info: Info,
        include_ended: Annotated[
            bool | None,
            strawberry.argument(
                description="Include ended ones too, newest history kept with who ended them and "
                "when; active ones only when not given (false)."
            ),
        ] = False,
    ) -> list[Annotated[Allocation, strawberry.lazy("schema.allocations")]]:
        relation = allocations.ALLOCATIONS_OF_LEARNER
        rows = await related(info.context, relation, self.row, include_ended=bool(include_ended))
        return project_all("Allocation", rows)

    @strawberry.field(
        description="The learner's course licences the caller can see, oldest first, narrowed "
        "by the filter as the licences list is (a learnerId of another learner: none).",
        extensions=requires(Resource.LICENCE),
        metadata={"relation": licences.LICENCES_OF_LEARNER},
    )
    async def licences(
        self,
        info: Info,
        filter: Annotated[LicenceFilter | None, FILTER] = None,  # type: ignore[valid-type]
        status: Annotated[
            LicenceStatus | None,
            strawberry.argument(
                description="Former place of filter.status; giving both is INVALID.",
                deprecation_reason="Use filter: {status}.",
            ),
        ] = None,
    ) -> list[Annotated[Licence, strawberry.lazy("schema.licences")]]:
        wanted = plain(filter, licences.LicenceFilter)
        rows = await related(
            info.context, licences.LICENCES_OF_LEARNER, self.row, filter=wanted, status=status
        )
        return project_all("Licence", rows)

    @strawberry.field(
        description="Who can currently see this learner, and why (admins and the learner).",
        extensions=requires(Resource.LEARNER, Action.VIEW_ACCESS),
    )
    async def access(self, info: Info) -> list[LearnerAccess] | None:
        grants = await access.learner_access(info.context, self.row)
        return [LearnerAccess.from_grant(g) for g in grants]

    evidence: list[Annotated[Evidence, strawberry.lazy("schema.evidence")]] = relation(
        evidence.EVIDENCE_OF_LEARNER,
        description="Evidence on the learner's records that the caller can see.",
        extensions=requires(Resource.EVIDENCE),
    )


@strawberry.type(description="One reason one person can currently see a learner.")
class LearnerAccess:
    user: User = strawberry.field(description="Who can see the learner.")
    role: Role = strawberry.field(description="The role that holds the scope.")
    reason: Scope = strawberry.field(
        description="ORGANISATION (their role covers the organisation), TEAM, ASSIGNED "
        "(a record assignment), ALLOCATED (an external assessor allocation) or SELF."
    )
    expires_at: datetime | None = strawberry.field(
        description="For an allocation: when it stops granting access."
    )
    api_key_id: strawberry.Private[int | None]

    @strawberry.field(
        description="The API key, when a partner system (not a person) can see the learner "
        "and the caller may read API keys (super admins); `user` is then the key's service "
        "identity.",
        extensions=requires(Resource.LEARNER, Action.VIEW_ACCESS),
    )
    async def api_key(self, info: Info) -> ApiKey | None:
        if self.api_key_id is None:
            return None
        key = (
            await info.context.loaders(RelationLoaders)
            .ref(api_keys.KEY_OF_ACCESS)
            .load(self.api_key_id)
        )
        return maybe("ApiKey", key)

    @classmethod
    def from_grant(cls, grant: access.AccessGrant) -> Self:
        return cls(
            user=User.from_row(grant.user),
            role=grant.role,
            reason=grant.scope,
            expires_at=grant.expires_at,
            api_key_id=grant.api_key_id,
        )


@strawberry.input(description="A new learner in the caller's organisation.")
class CreateLearnerInput:
    name: str = strawberry.field(description="Full name.")
    email: str | None = strawberry.field(
        default=None, description="With an email the learner gets a sign-in (role LEARNER)."
    )
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their location."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their department."
    )
    avatar_url: str | None = strawberry.field(default=None, description=AVATAR_URL)


@strawberry.input(description="Learners to add to the caller's organisation, all or none.")
class ImportLearnersInput:
    learners: list[CreateLearnerInput] = strawberry.field(description="Up to 1,000 learners.")


@answers(learners.LearnerCreated)
@strawberry.type(description="The learner was created.")
class LearnerCreated:
    learner: Learner = strawberry.field(description="The new learner.")
    licences: list[Annotated[Licence, strawberry.lazy("schema.licences")]] = strawberry.field(
        description="Licences the organisation's auto-allocation rules issued to them."
    )
    withheld: list[Annotated[WithheldLicence, strawberry.lazy("schema.licences")]] = (
        strawberry.field(
            description="Licences a rule matched but could not issue (the pool had no seat)."
        )
    )


@answers(learners.LearnersImported)
@strawberry.type(description="Every learner was created.")
class LearnersImported:
    learners: list[Learner] = strawberry.field(description="The new learners, in input order.")
    licences_issued: int = strawberry.field(
        description="Licences the auto-allocation rules issued to them."
    )
    withheld: list[Annotated[WithheldLicence, strawberry.lazy("schema.licences")]] = (
        strawberry.field(
            description="Licences a rule matched but could not issue (the pool had no seat)."
        )
    )


@strawberry.input(
    description="Change a learner; fields left out stay as they are. A learner who signs in has "
    "their sign-in's name and email: those change only here when the person belongs to no "
    "other organisation (otherwise only through support)."
)
class UpdateLearnerInput:
    learner_id: strawberry.ID = strawberry.field(description="The learner.")
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="Full name (null: unchanged)."
    )
    email: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Email address (null: unchanged). For a learner who signs in this is their "
        "sign-in: tokens for the old address stop working. A learner without a sign-in gets "
        "one, as at creation.",
    )
    location_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Their location; null: none."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Their department; null: none."
    )
    avatar_url: str | None = strawberry.field(
        default=strawberry.UNSET, description=f"{AVATAR_URL} Null or empty: no picture."
    )


@answers(learners.LearnerUpdated)
@strawberry.type(description="The learner was changed.")
class LearnerUpdated:
    learner: Learner = strawberry.field(description="The learner, as changed.")
    unchanged: bool = strawberry.field(
        description="True when every value given was so already: nothing changed, no audit event "
        "was written."
    )


@strawberry.type
class LearnerQuery:
    learners = connection(
        learners.LEARNERS,
        Learner,
        order="Learner",
        filter=learners.LearnerFilter,
        description="Learners the caller can see, by name.",
        extensions=requires(Resource.LEARNER),
    )

    @strawberry.field(
        description="One learner; null when it does not exist or the caller cannot see it.",
        extensions=requires(Resource.LEARNER),
        metadata={"by_id": ById("Learner")},
    )
    async def learner(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The learner's id.")],
    ) -> Learner | None:
        return maybe("Learner", await learners.learner(info.context, id=id))


@strawberry.type
class LearnerMutation:
    create_learner = mutation(
        learners.create_learner,
        audit=AuditAction.LEARNER_CREATED,
        input=CreateLearnerInput,
        repeat=refused(
            AlreadyExists,
            "with an email: already a learner here, nothing is created; without one, another "
            "learner",
        ),
        description="Add a learner to the caller's organisation (admins); auto-allocation "
        "rules fire.",
        extensions=changes(Resource.LEARNER, Action.CREATE),
    )
    import_learners = mutation(
        learners.import_learners,
        audit=AuditAction.LEARNERS_IMPORTED,
        input=ImportLearnersInput,
        repeat=refused(
            BulkRejected,
            "every email already a learner here is an ALREADY_EXISTS item; nothing is created",
        ),
        description="Add up to 1,000 learners, all or none (admins); auto-allocation rules "
        "fire for each.",
        extensions=changes(Resource.LEARNER, Action.CREATE),
    )
    update_learner = mutation(
        learners.update_learner,
        audit=AuditAction.LEARNER_UPDATED,
        input=UpdateLearnerInput,
        repeat=unchanged("identical values: `unchanged: true`, no audit event"),
        description="Change a learner's name, email or units (admins). Managers' teams follow "
        "the new units at once; auto-allocation rules do not fire (they reach people when they "
        "are created).",
        extensions=changes(Resource.LEARNER, Action.UPDATE),
    )
