"""Course licences: the catalogue, pools of seats, licences, allocation, launch and recall."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Self

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import capabilities, licences, rules
from resolvers.licences import LicenceLoaders
from resolvers.outcomes import AlreadyExists
from schema.capabilities import VIEWER_CAN, CourseCapabilities, LicenceCapabilities
from schema.connections import connection
from schema.context import Info
from schema.derive import input_of
from schema.enums import AuditAction, LicenceSource, LicenceStatus
from schema.learners import Learner
from schema.nodes import ROW_TYPES, Node, computed, node, project
from schema.people import FORMER_SEARCH, User
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import answers, mutation, refused, unchanged

if TYPE_CHECKING:
    from schema.rules import AutoAllocationRule


@node(
    models.LicencePool,
    LicenceLoaders.pool,
    seats_available=computed(licences.seats_available, "seats_total", "seats_used"),
)
@strawberry.type(description="An organisation's seats for one course.")
class LicencePool(Node):
    seats_total: int = strawberry.field(description="Seats bought.")
    seats_used: int = strawberry.field(
        description="Seats taken: every licence issued from the pool that was not recalled."
    )
    seats_available: int = strawberry.field(description="Seats left to allocate.")
    row: strawberry.Private[models.LicencePool]


@node(models.Course, LicenceLoaders.course)
@strawberry.type(description="A course in the catalogue.")
class Course(Node):
    title: str = strawberry.field(description="Title.")
    code: str = strawberry.field(description="Catalogue code, unique.")
    row: strawberry.Private[models.Course]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> CourseCapabilities:
        return CourseCapabilities(**await capabilities.of(info.context, self.row))

    pool: LicencePool | None = relation(
        licences.POOL_OF_COURSE,
        description="The caller's organisation's seats for this course; null where it has "
        "none, or the caller may not see pools.",
        extensions=requires(Resource.LICENCE_POOL),
    )


@node(models.Licence, LicenceLoaders.licence)
@strawberry.type(description="One learner's right to take one course.")
class Licence(Node):
    source: LicenceSource = strawberry.field(
        description="MANUAL (allocated by a person) or RULE (issued by an auto-allocation rule)."
    )
    allocated_at: datetime = strawberry.field(description="When it was issued.")
    launched_at: datetime | None = strawberry.field(
        description="When the learner first launched the course; a launched licence cannot be "
        "recalled."
    )
    expires_at: datetime | None = strawberry.field(
        description="When it expires, if it does: from then on an active licence reads as EXPIRED."
    )
    completed_at: datetime | None = strawberry.field(
        description="When the learner completed the course, if they did."
    )
    recalled_at: datetime | None = strawberry.field(description="When it was recalled, if it was.")
    row: strawberry.Private[models.Licence]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> LicenceCapabilities:
        return LicenceCapabilities(**await capabilities.of(info.context, self.row))

    @strawberry.field(
        description="Where the licence stands now: an active licence whose expiry has passed "
        "is EXPIRED. Completed and expired licences keep their seats; only recalling returns one.",
        metadata={"expression": licences.status_column},
    )
    def status(self, info: Info) -> LicenceStatus:
        return licences.status_at(self.row.status, self.row.expires_at, info.context.now)

    learner: Learner = relation(
        licences.LEARNER_OF_LICENCE,
        description="Who holds it.",
        extensions=requires(Resource.LEARNER),
    )
    course: Course = relation(
        licences.COURSE_OF, description="The course.", extensions=requires(Resource.LICENCE)
    )
    rule: Annotated[AutoAllocationRule, strawberry.lazy("schema.rules")] | None = relation(
        rules.RULE_OF_LICENCE,
        description="The auto-allocation rule that issued it, if a rule did and the caller may "
        "read rules (admins); otherwise null.",
        extensions=requires(Resource.LICENCE),
    )
    allocated_by: User | None = relation(
        licences.ALLOCATED_BY,
        description="Who allocated it (for a rule: who created the learner).",
        extensions=requires(Resource.LICENCE),
    )


@strawberry.type(description="A licence a rule matched but could not issue: the pool had no seat.")
class WithheldLicence:
    course: Course = strawberry.field(description="The course.")
    reason: str = strawberry.field(description="Why it was withheld.")
    learner: Learner = strawberry.field(description="Who would have received it.")
    rule: Annotated[AutoAllocationRule, strawberry.lazy("schema.rules")] = strawberry.field(
        description="The rule that matched."
    )

    @classmethod
    def from_row(cls, withheld: rules.Withheld) -> Self:
        return cls(
            course=Course.from_row(withheld.course),
            reason=withheld.reason,
            learner=Learner.from_row(withheld.learner),
            rule=project("AutoAllocationRule", withheld.rule),
        )


ROW_TYPES[rules.Withheld] = WithheldLicence

LicenceFilter = input_of(licences.LicenceFilter)
EligibleLearnerFilter = input_of(licences.EligibleLearnerFilter)


@strawberry.input(description="A new course in the catalogue (support only).")
class CreateCourseInput:
    title: str = strawberry.field(description="Title.")
    code: str = strawberry.field(description="Catalogue code, unique.")


@strawberry.input(description="Set an organisation's seats for a course (support only).")
class SetLicencePoolInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation.")
    course_id: strawberry.ID = strawberry.field(description="The course.")
    seats_total: int = strawberry.field(
        description="Seats bought; never fewer than the seats in use."
    )


@strawberry.input(description="Licences for one course to many learners.")
class AllocateLicencesInput:
    course_id: strawberry.ID = strawberry.field(description="The course.")
    learner_ids: list[strawberry.ID] = strawberry.field(description="Up to 1,000 learners.")
    expires_at: datetime | None = strawberry.field(
        default=None,
        description="When the licences expire (in the future); none: they do not. An expired "
        "licence keeps its seat, and its learner may be given a new one.",
    )


@strawberry.input(description="Recall licences that were never launched.")
class RecallLicencesInput:
    licence_ids: list[strawberry.ID] = strawberry.field(description="Up to 1,000 licences.")


@strawberry.input(description="The learner launched the course.")
class MarkLicenceLaunchedInput:
    licence_id: strawberry.ID = strawberry.field(description="The licence.")


@strawberry.input(description="The learner completed the course.")
class MarkLicenceCompletedInput:
    licence_id: strawberry.ID = strawberry.field(description="The licence.")


@answers(licences.CourseCreated)
@strawberry.type(description="The course is in the catalogue.")
class CourseCreated:
    course: Course = strawberry.field(description="The new course.")


@answers(licences.LicencePoolSet)
@strawberry.type(description="The organisation's seats for the course are set.")
class LicencePoolSet:
    pool: LicencePool = strawberry.field(description="The pool as it now stands.")
    unchanged: bool = strawberry.field(
        description="True when the pool had this many seats already: nothing changed, no audit "
        "event was written."
    )


@answers(licences.LicencesAllocated)
@strawberry.type(description="Every learner got a licence.")
class LicencesAllocated:
    licences: list[Licence] = strawberry.field(description="The new licences.")
    pool: LicencePool = strawberry.field(description="The pool as it now stands.")
    unchanged: int = strawberry.field(
        description="How many learners held an active licence for the course already: left as "
        "they were."
    )


@answers(licences.LicencesRecalled)
@strawberry.type(description="The licences were recalled and their seats returned.")
class LicencesRecalled:
    licences: list[Licence] = strawberry.field(description="The recalled licences.")
    pool: LicencePool | None = strawberry.field(
        description="The pool as it now stands, when every licence came from one pool."
    )
    unchanged: int = strawberry.field(
        description="How many licences were recalled already: left as they were."
    )


@answers(licences.LicenceLaunched)
@strawberry.type(description="The licence is marked launched.")
class LicenceLaunched:
    licence: Licence = strawberry.field(description="The licence.")
    unchanged: bool = strawberry.field(
        description="True when it was launched already: nothing changed, no audit event was "
        "written."
    )


@answers(licences.LicenceCompleted)
@strawberry.type(description="The licence is marked completed.")
class LicenceCompleted:
    licence: Licence = strawberry.field(description="The licence.")
    unchanged: bool = strawberry.field(
        description="It was completed already: nothing changed and no audit event was written."
    )


@strawberry.type
class LicenceQuery:
    courses = connection(
        licences.COURSES,
        Course,
        order="Course",
        description="The course catalogue, by title, with the caller's organisation's pools.",
        extensions=requires(Resource.COURSE),
    )

    licence_eligible_learners = connection(
        licences.ELIGIBLE_LEARNERS,
        Learner,
        order="Learner",
        filter=licences.EligibleLearnerFilter,
        arguments={
            "course_id": Annotated[
                strawberry.ID, strawberry.argument(description="The course the licences are for.")
            ],
            "search": FORMER_SEARCH,
        },
        description="Learners the caller can see who hold no active licence for the course, "
        "by name: the list to allocate from.",
        extensions=requires(Resource.LEARNER),
    )

    licences = connection(
        licences.LICENCES,
        Licence,
        order="Licence",
        filter=licences.LicenceFilter,
        description="Licences the caller can see (those of the learners they see), oldest first.",
        extensions=requires(Resource.LICENCE),
    )


@strawberry.type
class LicenceMutation:
    create_course = mutation(
        licences.create_course,
        audit=AuditAction.COURSE_CREATED,
        input=CreateCourseInput,
        repeat=refused(AlreadyExists, "the code is taken: nothing is created"),
        description="Add a course to the catalogue. Support only.",
        extensions=changes(Resource.COURSE, Action.CREATE),
    )
    set_licence_pool = mutation(
        licences.set_licence_pool,
        audit=AuditAction.LICENCE_POOL_SET,
        input=SetLicencePoolInput,
        repeat=unchanged("the same `seatsTotal`: `unchanged: true`, no audit event"),
        description="Set an organisation's seats for a course. Support only.",
        extensions=changes(Resource.LICENCE_POOL, Action.CREATE),
    )
    allocate_licences = mutation(
        licences.allocate_licences,
        audit=AuditAction.LICENCES_ALLOCATED,
        input=AllocateLicencesInput,
        repeat=unchanged(
            "learners holding an active licence for the course count in `unchanged` and use no "
            "seat; none new: no audit event"
        ),
        description="Licences for a course to learners, all or none, within the pool's seats "
        "(admins; managers for their team).",
        extensions=changes(Resource.LEARNER, Action.ALLOCATE_LICENCES),
    )
    recall_licences = mutation(
        licences.recall_licences,
        audit=AuditAction.LICENCES_RECALLED,
        input=RecallLicencesInput,
        repeat=unchanged(
            "licences recalled already count in `unchanged`; none recalled now: no audit event"
        ),
        description="Recall licences never launched, all or none; their seats return.",
        extensions=changes(Resource.LEARNER, Action.ALLOCATE_LICENCES),
    )
    mark_licence_launched = mutation(
        licences.mark_licence_launched,
        audit=AuditAction.LICENCE_LAUNCHED,
        input=MarkLicenceLaunchedInput,
        repeat=unchanged("launched already: `unchanged: true`, `launchedAt` kept, no audit event"),
        description="Record that the learner launched the course (the learner, or an admin).",
        extensions=changes(Resource.LICENCE, Action.LAUNCH),
    )
    mark_licence_completed = mutation(
        licences.mark_licence_completed,
        audit=AuditAction.LICENCE_COMPLETED,
        input=MarkLicenceCompletedInput,
        repeat=unchanged(
            "completed already: `unchanged: true`, `completedAt` kept, no audit event"
        ),
        description="Record that the learner completed the course (the learner, or an admin). "
        "The licence keeps its seat and is no longer active: the learner may be allocated "
        "another for the course. Repeating it answers unchanged.",
        extensions=changes(Resource.LICENCE, Action.COMPLETE),
    )
