"""Capabilities: `viewerCan` on every object an action targets, `Viewer.can` for the others.

Each flag names a mutation; resolvers/capabilities.py says how it is decided.
"""

from __future__ import annotations

import strawberry

VIEWER_CAN = (
    "What the caller may do with this object: each flag is true exactly when that mutation, "
    "on this object alone, would answer neither FORBIDDEN, NOT_FOUND nor a state error "
    "(archived, launched, deactivated, recalled, decided). Seats, the other items of a bulk "
    "call and the values given are not considered. Any signed-in caller may ask."
)


def _allowed(mutation: str, more: str = "") -> bool:
    return strawberry.field(
        description=f"`{mutation}` would be accepted.{' ' + more if more else ''}"
    )


def _flag(mutation: str, more: str = "") -> bool:
    return strawberry.field(
        description=f"`{mutation}` on this object would be accepted.{' ' + more if more else ''}"
    )


@strawberry.type(description="What the caller may do with a learner.")
class LearnerCapabilities:
    update: bool = _flag("updateLearner")
    allocate_assessor: bool = _flag(
        "allocateAssessor", "Also deallocateAssessor: the same permission."
    )
    allocate_licence: bool = _flag(
        "allocateLicences", "For this learner as an item; recallLicences needs the same."
    )


@strawberry.type(description="What the caller may do with an apprentice record.")
class ApprenticeRecordCapabilities:
    assign: bool = _flag(
        "assignRecords", "Also unassignRecords and assignTrainingCoordinator; false once archived."
    )
    submit_evidence: bool = _flag("submitEvidence", "False once the record is archived.")
    archive: bool = _flag(
        "archiveApprenticeRecord", "True on an archived record too (answered unchanged)."
    )
    restore: bool = _flag(
        "restoreApprenticeRecord", "True on a live record too (answered unchanged)."
    )


@strawberry.type(description="What the caller may do with a piece of evidence.")
class EvidenceCapabilities:
    decide: bool = _flag(
        "signOffEvidence",
        "False once it is decided (EvidenceLocked, or unchanged when repeating one's own "
        "decision) or its record is archived.",
    )


@strawberry.type(description="What the caller may do with a licence.")
class LicenceCapabilities:
    recall: bool = _flag(
        "recallLicences", "For this licence as an item: never launched, active or recalled."
    )
    launch: bool = _flag("markLicenceLaunched", "Only an active licence.")
    complete: bool = _flag(
        "markLicenceCompleted", "An active licence, or a completed one (answered unchanged)."
    )


@strawberry.type(description="What the caller may do with an allocation.")
class AllocationCapabilities:
    deallocate: bool = _flag(
        "deallocateAssessor",
        "With its learner and assessor; true for one ended already (answered unchanged).",
    )


@strawberry.type(description="What the caller may do with an assignment.")
class AssignmentCapabilities:
    unassign: bool = _flag(
        "unassignRecords",
        "With its record, assignee and role; false once the record is archived; true for one "
        "ended already (answered unchanged).",
    )


@strawberry.type(description="What the caller may do with a course.")
class CourseCapabilities:
    allocate: bool = _flag(
        "allocateLicences", "With this course; which learners and whether seats remain aside."
    )


@strawberry.type(description="What the caller may do with a person (as a staff member).")
class UserCapabilities:
    update: bool = _flag(
        "updateStaffMember",
        "Admins: a member still active here (support: the name and picture of anyone).",
    )
    deactivate: bool = _flag(
        "deactivateStaffMember",
        "A super admin only by a super admin, never the organisation's last active one; "
        "true for one deactivated already (answered unchanged).",
    )


@strawberry.type(description="What the caller may do with an API key.")
class ApiKeyCapabilities:
    revoke: bool = _flag("revokeApiKey", "True on a revoked key too (answered unchanged).")


@strawberry.type(description="What the caller may do with an auto-allocation rule.")
class AutoAllocationRuleCapabilities:
    delete: bool = _flag("deleteAutoAllocationRule")


@strawberry.type(
    description="The actions without a target object the caller may take: each flag is true "
    "exactly when that mutation would not answer FORBIDDEN (its input aside)."
)
class ViewerCapabilities:
    create_organisation: bool = _allowed("createOrganisation")
    create_location: bool = _allowed("createLocation")
    create_department: bool = _allowed("createDepartment")
    create_staff_member: bool = _allowed("createStaffMember")
    create_external_assessor: bool = _allowed("createExternalAssessor")
    create_learner: bool = _allowed("createLearner")
    import_learners: bool = _allowed("importLearners")
    create_apprentice_record: bool = _allowed(
        "createApprenticeRecord", "For a learner the caller may create records for."
    )
    create_course: bool = _allowed("createCourse")
    set_licence_pool: bool = _allowed("setLicencePool")
    create_auto_allocation_rule: bool = _allowed("createAutoAllocationRule")
    create_api_key: bool = _allowed("createApiKey")
