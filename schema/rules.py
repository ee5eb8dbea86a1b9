"""Auto-allocation rules: licences for learners as they are created; existing ones on request."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import capabilities, licences, rules
from resolvers.outcomes import AlreadyExists
from resolvers.rules import RuleLoaders
from schema.capabilities import VIEWER_CAN, AutoAllocationRuleCapabilities
from schema.connections import connection, items
from schema.context import Info
from schema.enums import AuditAction, RuleScope
from schema.learners import Learner
from schema.licences import Course
from schema.nodes import Node, node
from schema.organisations import Department, Location
from schema.people import User
from schema.permissions import changes, requires, signed_in
from schema.relations import relation
from schema.results import answers, mutation, read, reads, refused, unchanged


@node(models.AutoAllocationRule, RuleLoaders.rule)
@strawberry.type(
    description="Issues a licence for its course to each matching learner created after it."
)
class AutoAllocationRule(Node):
    scope: RuleScope = strawberry.field(description="Which learners it matches.")
    created_at: datetime = strawberry.field(description="When it was made.")
    deleted_at: datetime | None = strawberry.field(
        description="When it was deleted, if it was; it then issues nothing."
    )
    row: strawberry.Private[models.AutoAllocationRule]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> AutoAllocationRuleCapabilities:
        return AutoAllocationRuleCapabilities(**await capabilities.of(info.context, self.row))

    course: Course = relation(
        licences.COURSE_OF,
        description="The course it issues licences for.",
        extensions=requires(Resource.AUTO_ALLOCATION_RULE),
    )
    location: Location | None = relation(
        rules.LOCATION_OF_RULE,
        description="The location it matches (LOCATION and ADVANCED rules).",
        extensions=requires(Resource.AUTO_ALLOCATION_RULE),
    )
    department: Department | None = relation(
        rules.DEPARTMENT_OF_RULE,
        description="The department it matches (DEPARTMENT and ADVANCED rules).",
        extensions=requires(Resource.AUTO_ALLOCATION_RULE),
    )
    created_by: User | None = relation(
        rules.CREATED_BY,
        description="Who made it.",
        extensions=requires(Resource.AUTO_ALLOCATION_RULE),
    )


@strawberry.input(
    description="A rule: LOCATION needs locationId, DEPARTMENT departmentId, "
    "ADVANCED both, ENTIRE_COMPANY neither."
)
class CreateAutoAllocationRuleInput:
    course_id: strawberry.ID = strawberry.field(description="The course.")
    scope: RuleScope = strawberry.field(description="Which learners it matches.")
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="For LOCATION and ADVANCED."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=None, description="For DEPARTMENT and ADVANCED."
    )
    apply_to_existing: bool = strawberry.field(
        default=False,
        description="Also issue licences now to every matching learner without an active one; "
        "if the pool cannot cover them all, nothing is created.",
    )


@strawberry.input(description="Delete an auto-allocation rule.")
class DeleteAutoAllocationRuleInput:
    rule_id: strawberry.ID = strawberry.field(description="The rule.")


@answers(rules.AutoAllocationRuleCreated)
@strawberry.type(description="The rule exists and fires for learners created from now on.")
class AutoAllocationRuleCreated:
    rule: AutoAllocationRule = strawberry.field(description="The new rule.")
    licences_issued: int = strawberry.field(
        description="Licences issued to existing learners (applyToExisting)."
    )


@answers(rules.AutoAllocationRuleDeleted)
@strawberry.type(description="The rule no longer fires; the licences it issued remain.")
class AutoAllocationRuleDeleted:
    id: strawberry.ID = strawberry.field(description="The deleted rule's id.")
    unchanged: bool = strawberry.field(
        description="True when the rule was deleted already: nothing changed, no audit event was "
        "written."
    )


@answers(rules.RulePreview)
@strawberry.type(description="Who would get a licence now, if the rule applied to existing people.")
class RulePreview:
    count: int = strawberry.field(
        description="How many learners would get a licence: learners.totalCount.",
        deprecation_reason="Use learners.totalCount.",
    )
    seats_available: int = strawberry.field(description="Seats left in the course's pool.")
    reached: strawberry.Private[Any]

    learners = connection(
        rules.PREVIEW_LEARNERS,
        Learner,
        order="Learner",
        rows=lambda preview: preview.reached,
        description="Those learners, by name.",
        extensions=requires(Resource.LEARNER),
    )


@strawberry.type
class RuleQuery:
    auto_allocation_rules = items(
        rules.RULES,
        AutoAllocationRule,
        arguments={
            "course_id": Annotated[
                strawberry.ID | None,
                strawberry.argument(
                    description="Only this course's rules; every course when not given."
                ),
            ]
        },
        description="The organisation's auto-allocation rules in force, oldest first.",
        extensions=requires(Resource.AUTO_ALLOCATION_RULE),
    )

    auto_allocation_rule_preview = read(
        rules.preview_auto_allocation_rule,
        input=CreateAutoAllocationRuleInput,
        description="Who would get a licence now if the rule were made with applyToExisting "
        "(admins). Changes nothing.",
        extensions=requires(Resource.AUTO_ALLOCATION_RULE, Action.CREATE),
    )


@strawberry.type
class RuleMutation:
    create_auto_allocation_rule = mutation(
        rules.create_auto_allocation_rule,
        audit=AuditAction.AUTO_ALLOCATION_RULE_CREATED,
        input=CreateAutoAllocationRuleInput,
        repeat=refused(
            AlreadyExists,
            "a rule in force with the same course, scope, location and department: nothing is "
            "created",
        ),
        description="Make a rule; with applyToExisting, also license the matching learners "
        "already here, all or none.",
        extensions=changes(Resource.AUTO_ALLOCATION_RULE, Action.CREATE),
    )
    preview_auto_allocation_rule = mutation(
        rules.preview_auto_allocation_rule,
        audit=None,
        input=CreateAutoAllocationRuleInput,
        repeat=reads("writes nothing: the same preview while nothing else changes"),
        description="Dry run: who would get a licence now. Writes nothing.",
        extensions=changes(Resource.AUTO_ALLOCATION_RULE, Action.CREATE),
        deprecation_reason="Use the query autoAllocationRulePreview.",
    )
    delete_auto_allocation_rule = mutation(
        rules.delete_auto_allocation_rule,
        audit=AuditAction.AUTO_ALLOCATION_RULE_DELETED,
        input=DeleteAutoAllocationRuleInput,
        repeat=unchanged(
            "deleted already (kept as history): `unchanged: true`, no audit event; an id never "
            "issued or not visible: `NotFoundError`"
        ),
        description="Stop a rule from firing.",
        extensions=changes(Resource.AUTO_ALLOCATION_RULE, Action.DELETE),
    )
