"""The one vocabulary of authorisation. policy.csv uses exactly these strings."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    SUPER_ADMIN = "SUPER_ADMIN"
    ADMIN = "ADMIN"
    SENIOR_ASSESSOR = "SENIOR_ASSESSOR"
    MANAGER = "MANAGER"
    ASSESSOR = "ASSESSOR"
    TRAINING_COORDINATOR = "TRAINING_COORDINATOR"
    LEARNER = "LEARNER"
    EXTERNAL_ASSESSOR = "EXTERNAL_ASSESSOR"
    SUPPORT = "SUPPORT"


# Roles held through a membership of an organisation (the others come from the user's kind).
MEMBERSHIP_ROLES = frozenset(Role) - {Role.EXTERNAL_ASSESSOR, Role.SUPPORT}


class Resource(enum.StrEnum):
    ORGANISATION = "organisation"
    LOCATION = "location"
    DEPARTMENT = "department"
    STAFF = "staff"
    EXTERNAL_ASSESSOR = "external_assessor"
    LEARNER = "learner"
    RECORD = "record"
    ASSIGNMENT = "assignment"
    ALLOCATION = "allocation"
    EVIDENCE = "evidence"
    AUDIT_EVENT = "audit_event"
    COURSE = "course"
    LICENCE_POOL = "licence_pool"
    LICENCE = "licence"
    AUTO_ALLOCATION_RULE = "auto_allocation_rule"
    API_KEY = "api_key"
    WEBHOOK_ENDPOINT = "webhook_endpoint"
    WEBHOOK_DELIVERY = "webhook_delivery"


class Action(enum.StrEnum):
    READ = "read"
    CREATE = "create"
    """Create inside an organisation: scopes `all` or `organisation` name which ones."""
    ALLOCATE = "allocate"
    """Allocate external assessors to a learner, or end an allocation."""
    SUBMIT_EVIDENCE = "submit_evidence"
    """Submit evidence on a record."""
    DECIDE = "decide"
    """Sign a piece of evidence off, or refer it back."""
    VIEW_ACCESS = "view_access"
    """See who can see a learner, and why."""
    ASSIGN = "assign"
    """Assign users to records, or end their assignments."""
    ALLOCATE_LICENCES = "allocate_licences"
    """Allocate course licences to a learner, or recall the learner's licences."""
    LAUNCH = "launch"
    """Mark a licence launched: the learner has started the course."""
    COMPLETE = "complete"
    """Mark a licence completed: the learner has finished the course."""
    DELETE = "delete"
    """Delete a row (auto-allocation rules)."""
    REVOKE = "revoke"
    """Revoke a credential from now on."""
    UPDATE = "update"
    """Change a learner's or a staff member's details (name, email, roles, units)."""
    DEACTIVATE = "deactivate"
    """Deactivate a staff member: their sign-in stops working here and their assignments end."""
    ARCHIVE = "archive"
    """Archive an apprentice record (it becomes read-only), or restore it."""
    BIND = "bind"
    """Bind an OpenID Connect issuer to an organisation, or remove it."""
    REDELIVER = "redeliver"
    """Send a webhook delivery again."""


class Scope(enum.StrEnum):
    ALL = "all"
    """Every row, in every organisation."""
    ORGANISATION = "organisation"
    """Rows of the principal's organisation."""
    TEAM = "team"
    """Learners matching every unit set on the principal's membership (none set: nobody)."""
    ASSIGNED = "assigned"
    """Records with an active assignment to the principal, and those records' learners."""
    ALLOCATED = "allocated"
    """Learners with an active, unexpired allocation to the principal, with all their records."""
    ALLOCATED_HERE = "allocated_here"
    """External assessors with an active, unexpired allocation in the principal's organisation."""
    SELF = "self"
    """The principal themself, or the learner linked to them."""
    BY_SUPPORT = "by_support"
    """Audit events whose actor is a support user (the vendor's staff)."""


# Plain words for refusals: "Your roles do not allow assigning apprentice records."
NOUNS: dict[Resource, tuple[str, str]] = {
    Resource.ORGANISATION: ("organisation", "organisations"),
    Resource.LOCATION: ("location", "locations"),
    Resource.DEPARTMENT: ("department", "departments"),
    Resource.STAFF: ("staff member", "staff members"),
    Resource.EXTERNAL_ASSESSOR: ("external assessor profile", "external assessor profiles"),
    Resource.LEARNER: ("learner", "learners"),
    Resource.RECORD: ("apprentice record", "apprentice records"),
    Resource.ASSIGNMENT: ("assignment", "assignments"),
    Resource.ALLOCATION: ("allocation", "allocations"),
    Resource.EVIDENCE: ("evidence", "evidence"),
    Resource.AUDIT_EVENT: ("audit event", "audit events"),
    Resource.COURSE: ("course", "courses"),
    Resource.LICENCE_POOL: ("licence pool", "licence pools"),
    Resource.LICENCE: ("licence", "licences"),
    Resource.AUTO_ALLOCATION_RULE: ("auto-allocation rule", "auto-allocation rules"),
    Resource.API_KEY: ("API key", "API keys"),
    Resource.WEBHOOK_ENDPOINT: ("webhook endpoint", "webhook endpoints"),
    Resource.WEBHOOK_DELIVERY: ("webhook delivery", "webhook deliveries"),
}
VERBS: dict[Action, str] = {
    Action.READ: "reading",
    Action.CREATE: "creating",
    Action.ALLOCATE: "allocating external assessors to",
    Action.SUBMIT_EVIDENCE: "submitting evidence on",
    Action.DECIDE: "signing off or referring",
    Action.VIEW_ACCESS: "seeing who can see",
    Action.ASSIGN: "assigning",
    Action.ALLOCATE_LICENCES: "allocating or recalling licences of",
    Action.LAUNCH: "launching",
    Action.COMPLETE: "completing",
    Action.DELETE: "deleting",
    Action.REVOKE: "revoking",
    Action.UPDATE: "changing",
    Action.DEACTIVATE: "deactivating",
    Action.ARCHIVE: "archiving or restoring",
    Action.BIND: "binding identity providers to",
    Action.REDELIVER: "sending again",
}


def refusal(resource: Resource, action: Action, *, this: bool = False) -> str:
    """Why an action is refused, in plain words: for any target, or for `this` one."""
    one, many = NOUNS[resource]
    return f"Your roles do not allow {VERBS[action]} {'this ' + one if this else many}."
