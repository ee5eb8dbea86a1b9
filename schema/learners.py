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
    evidence,
    learners,
    licences,
    records,
)
from resolvers.learners import LearnerLoaders
from resolvers.relations import RelationLoaders, related
from schema.api_keys import ApiKey
from schema.connections import Connection
from schema.context import Info
from schema.derive import input_of, plain
from schema.enums import LicenceStatus, Role
from schema.nodes import Node, computed, maybe, node, project_all
from schema.people import User, initials_of
from schema.permissions import changes, requires
from schema.relations import relation
from schema.results import answers, mutation

if TYPE_CHECKING:
    from schema.allocations import Allocation
    from schema.evidence import Evidence
    from schema.licences import Licence, WithheldLicence
    from schema.organisations import Department, Location
    from schema.records import ApprenticeRecord

strawberry.enum(
    Scope,
    name="AccessReason",
    description="Why a person can see a learner: the policy scope that grants it.",
)


@node(
    models.Learner,
    lambda ctx: ctx.loaders(LearnerLoaders).learner,
    initials=computed(initials_of, "name"),
)
@strawberry.type(description="A person in an organisation who learns.")
class Learner(Node):
    name: str = strawberry.field(description="Full name.")
    email: str | None = strawberry.field(description="Email address, if known.")
    initials: str = strawberry.field(description="One or two letters for an avatar.")
    created_at: datetime = strawberry.field(description="When the learner was added.")
    row: strawberry.Private[models.Learner]

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
    allocations: list[Annotated[Allocation, strawberry.lazy("schema.allocations")]] = relation(
        allocations.ACTIVE_ALLOCATIONS_OF_LEARNER,
        description="Active external assessor allocations the caller can see.",
        extensions=requires(Resource.ALLOCATION),
    )
    assessors: list[User] = relation(
        assignments.ASSESSORS_OF_LEARNER,
        description="Everyone assigned to or allocated to this learner, as visible to the caller.",
        extensions=requires(Resource.ASSIGNMENT),
    )

    @strawberry.field(
        description="The learner's course licences, in any status unless one is asked for.",
        extensions=requires(Resource.LICENCE),
        metadata={"relation": licences.LICENCES_OF_LEARNER},
    )
    async def licences(
        self, info: Info, status: LicenceStatus | None = None
    ) -> list[Annotated[Licence, strawberry.lazy("schema.licences")]]:
        rows = await related(info.context, licences.LICENCES_OF_LEARNER, self.row, status=status)
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
        description="The API key, when a partner system (not a person) can see the learner; "
        "`user` is then the key's service identity.",
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


LearnerFilter = input_of(learners.LearnerFilter)


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


@strawberry.type
class LearnerQuery:
    @strawberry.field(
        description="Learners the caller can see, by name.",
        extensions=requires(Resource.LEARNER),
        metadata={"list": learners.LEARNERS, "filter": learners.LearnerFilter},
    )
    async def learners(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: LearnerFilter | None = None,  # type: ignore[valid-type]
    ) -> Connection[Learner]:
        wanted = plain(filter, learners.LearnerFilter)
        page = await learners.learners(info.context, first=first, after=after, filter=wanted)
        return Connection.from_page(page, Learner.from_row)

    @strawberry.field(
        description="One learner; null when it does not exist or the caller cannot see it.",
        extensions=requires(Resource.LEARNER),
    )
    async def learner(self, info: Info, id: strawberry.ID) -> Learner | None:
        return maybe("Learner", await learners.learner(info.context, id=id))


@strawberry.type
class LearnerMutation:
    create_learner = mutation(
        learners.create_learner,
        input=CreateLearnerInput,
        description="Add a learner to the caller's organisation; auto-allocation rules fire.",
        extensions=changes(Resource.LEARNER, Action.CREATE),
    )
    import_learners = mutation(
        learners.import_learners,
        input=ImportLearnersInput,
        description="Add up to 1,000 learners, all or none; auto-allocation rules fire for each.",
        extensions=changes(Resource.LEARNER, Action.CREATE),
    )
