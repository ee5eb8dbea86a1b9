"""People: users, the viewer, staff (the assignee drop-down), the external assessor directory."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from db import models
from policies.vocabulary import Action, Resource
from resolvers import assignments, capabilities, people
from resolvers.outcomes import AlreadyExists
from resolvers.people import PeopleLoaders
from schema.capabilities import VIEWER_CAN, UserCapabilities, ViewerCapabilities
from schema.connections import connection
from schema.context import Info
from schema.derive import input_of
from schema.enums import AuditAction, Role
from schema.nodes import NODE_TYPES, Node, computed, maybe, node
from schema.permissions import changes, requires, signed_in
from schema.results import answers, mutation, refused, unchanged

if TYPE_CHECKING:
    from schema.organisations import Department, Location, Organisation


AVATAR_URL = (
    "Picture: an https URL with a host, at most 1,000 characters (ValidationError INVALID, "
    "field avatarUrl, otherwise)."
)


def initials_of(name: str) -> str:
    parts = [p for p in name.replace("-", " ").split() if p[:1].isalpha()]
    if not parts:
        return name[:1].upper()
    if len(parts) == 1:
        return parts[0][:1].upper()
    return (parts[0][:1] + parts[-1][:1]).upper()


IN_ORGANISATION = strawberry.argument(
    description="The organisation to answer for (support may name any; others only their own); "
    "the caller's own organisation when not given."
)


@node(
    models.User,
    PeopleLoaders.user,
    initials=computed(initials_of, "name"),
    is_external_assessor=computed(lambda kind: kind == models.UserKind.EXTERNAL_ASSESSOR, "kind"),
)
@strawberry.type(description="A person who signs in.")
class User(Node):
    name: str = strawberry.field(description="Full name.")
    email: str = strawberry.field(description="Sign-in email address.")
    initials: str = strawberry.field(description="One or two letters for an avatar.")
    avatar_url: str | None = strawberry.field(
        description="Picture (an https URL), if the person has one."
    )
    is_external_assessor: bool = strawberry.field(
        description="True for assessors outside every customer organisation."
    )
    row: strawberry.Private[models.User]

    @strawberry.field(description=VIEWER_CAN, extensions=signed_in())
    async def viewer_can(self, info: Info) -> UserCapabilities:
        return UserCapabilities(**await capabilities.of(info.context, self.row))

    @strawberry.field(
        description="Active record assignments this person holds, as far as the caller can see.",
        extensions=requires(Resource.ASSIGNMENT),
        metadata={"expression": assignments.caseload_column},
    )
    async def caseload_count(self, info: Info) -> int:
        return await assignments.caseload_count(info.context, self.row.id)

    @strawberry.field(
        description="The person's roles in the caller's organisation, or in the one named "
        "(support may name any; others see only their own).",
        extensions=requires(Resource.STAFF),
        metadata={
            "expression": people.roles_column,
            "format": people.roles_shown,
            "columns": ("kind",),
        },
    )
    async def roles(
        self, info: Info, organisation_id: Annotated[strawberry.ID | None, IN_ORGANISATION] = None
    ) -> list[Role]:
        return await people.user_roles(info.context, self.row, organisation_id)

    @strawberry.field(
        description="When the person was deactivated in the caller's organisation, or in the "
        "one named (support may name any); null while they are active.",
        extensions=requires(Resource.STAFF),
        metadata={
            "expression": people.deactivated_column,
            "format": people.deactivated_shown,
            "columns": ("kind",),
        },
    )
    async def deactivated_at(
        self, info: Info, organisation_id: Annotated[strawberry.ID | None, IN_ORGANISATION] = None
    ) -> datetime | None:
        return await people.deactivated_at(info.context, self.row, organisation_id)


@strawberry.type(description="Who is asking, and as what.")
class Viewer:
    user: User = strawberry.field(description="The signed-in user.")
    organisation: Annotated[Organisation, strawberry.lazy("schema.organisations")] | None = (
        strawberry.field(
            description="The organisation the caller acts in "
            "(none for support and external assessors)."
        )
    )
    roles: list[Role] = strawberry.field(description="The caller's roles there.")

    @strawberry.field(
        description="Every active membership of the signed-in person, in every organisation, "
        "whichever one the credential names (for an organisation switcher); deactivated ones "
        "are left out. Empty for support users, external assessors, API keys and the command "
        "line: they belong to no organisation as a person.",
        extensions=signed_in(),
    )
    async def memberships(self, info: Info) -> list[ViewerMembership]:
        return [ViewerMembership.of(m) for m in await people.viewer_memberships(info.context)]

    @strawberry.field(
        description="The actions without a target object the caller may take (what each "
        "object's viewerCan says for the others).",
        extensions=signed_in(),
    )
    def can(self, info: Info) -> ViewerCapabilities:
        return ViewerCapabilities(**capabilities.viewer_can(info.context))


@strawberry.type(description="The signed-in person's place in one organisation.")
class ViewerMembership:
    organisation: Annotated[Organisation, strawberry.lazy("schema.organisations")] = (
        strawberry.field(description="The organisation.")
    )
    roles: list[Role] = strawberry.field(description="Their roles there.")
    location: Annotated[Location, strawberry.lazy("schema.organisations")] | None = (
        strawberry.field(description="Their location there, if any.")
    )
    department: Annotated[Department, strawberry.lazy("schema.organisations")] | None = (
        strawberry.field(description="Their department there, if any.")
    )

    @classmethod
    def of(cls, found: people.ViewerMembership) -> ViewerMembership:
        return cls(
            organisation=NODE_TYPES["Organisation"].from_row(found.organisation),
            roles=found.roles,
            location=maybe("Location", found.location),
            department=maybe("Department", found.department),
        )


StaffFilter = input_of(people.StaffFilter)
ExternalAssessorFilter = input_of(people.ExternalAssessorFilter)
SEARCH_MOVED = "Use filter: {search}."
FORMER_SEARCH = Annotated[
    str | None,
    strawberry.argument(
        description="Former place of filter.search; giving both is INVALID.",
        deprecation_reason=SEARCH_MOVED,
    ),
]


@strawberry.input(
    description="A new member of staff (or an existing one joining this organisation)."
)
class CreateStaffMemberInput:
    organisation_id: strawberry.ID | None = strawberry.field(
        default=None, description="Support only; others act in their own organisation."
    )
    name: str = strawberry.field(description="Full name.")
    email: str = strawberry.field(description="Sign-in email address.")
    roles: list[Role] = strawberry.field(description="Roles in the organisation.")
    location_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their location."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=None, description="Their department."
    )


@strawberry.input(description="A new external assessor profile (support only).")
class CreateExternalAssessorInput:
    name: str = strawberry.field(description="Full name.")
    email: str = strawberry.field(description="Sign-in email address.")
    avatar_url: str | None = strawberry.field(default=None, description=AVATAR_URL)


@answers(people.StaffMemberCreated)
@strawberry.type(description="The staff member was created or joined the organisation.")
class StaffMemberCreated:
    user: User = strawberry.field(description="The staff member.")


@answers(people.ExternalAssessorCreated)
@strawberry.type(description="The external assessor profile was created.")
class ExternalAssessorCreated:
    assessor: User = strawberry.field(description="The new external assessor.")


@strawberry.input(
    description="Change an external assessor's profile; fields left out stay as they are."
)
class UpdateExternalAssessorInput:
    user_id: strawberry.ID = strawberry.field(description="The external assessor.")
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="Full name (null: unchanged)."
    )
    email: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Sign-in email address (null: unchanged); another person's is "
        "AlreadyExistsError.",
    )
    avatar_url: str | None = strawberry.field(
        default=strawberry.UNSET, description=f"{AVATAR_URL} Null or empty: no picture."
    )


@answers(people.ExternalAssessorUpdated)
@strawberry.type(description="The external assessor profile was changed.")
class ExternalAssessorUpdated:
    assessor: User = strawberry.field(description="The external assessor.")
    unchanged: bool = strawberry.field(
        description="Every value given was already so: nothing was written, no audit event."
    )


@strawberry.input(
    description="Change a staff member; fields left out stay as they are. Admins change the "
    "name, picture, roles and units of their organisation's staff, except the name and picture "
    "of someone who also belongs elsewhere, which only support changes; support changes names "
    "and pictures only."
)
class UpdateStaffMemberInput:
    user_id: strawberry.ID = strawberry.field(description="The staff member.")
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="Full name (null: unchanged)."
    )
    roles: list[Role] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Their staff roles here, replacing the current ones (null: unchanged). "
        "Only a super admin gives or takes away SUPER_ADMIN; the last active super admin keeps "
        "it.",
    )
    location_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Their location; null: none."
    )
    department_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="Their department; null: none."
    )
    avatar_url: str | None = strawberry.field(
        default=strawberry.UNSET,
        description=f"{AVATAR_URL} Null or empty: no picture. The picture is the person's "
        "everywhere: for someone who also belongs elsewhere only support changes it.",
    )


@strawberry.input(description="The staff member to deactivate.")
class DeactivateStaffMemberInput:
    user_id: strawberry.ID = strawberry.field(description="The staff member.")


@answers(people.StaffMemberUpdated)
@strawberry.type(description="The staff member was changed.")
class StaffMemberUpdated:
    user: User = strawberry.field(description="The staff member, as changed.")
    unchanged: bool = strawberry.field(
        description="True when every value given was so already: nothing changed, no audit event "
        "was written."
    )


@answers(people.StaffMemberDeactivated)
@strawberry.type(description="The staff member was deactivated here.")
class StaffMemberDeactivated:
    user: User = strawberry.field(description="The deactivated staff member.")
    ended_assignments: int = strawberry.field(
        description="How many of their active assignments ended (archived records included)."
    )
    unchanged: bool = strawberry.field(
        description="True when they were deactivated here already: nothing changed, no audit "
        "event was written."
    )


@strawberry.type
class PeopleQuery:
    @strawberry.field(description="Who is asking.", extensions=signed_in())
    async def viewer(self, info: Info) -> Viewer:
        found = await people.viewer(info.context)
        return Viewer(
            user=User.from_row(found.user),
            organisation=maybe("Organisation", found.organisation),
            roles=found.roles,
        )

    staff = connection(
        people.STAFF,
        User,
        order="User",
        filter=people.StaffFilter,
        description="Staff the caller can see: the assignee drop-down. Active staff unless the "
        "filter asks for deactivated ones.",
        extensions=requires(Resource.STAFF),
    )

    external_assessors = connection(
        people.EXTERNAL_ASSESSORS,
        User,
        order="User",
        filter=people.ExternalAssessorFilter,
        arguments={"search": FORMER_SEARCH},
        description="The external assessor directory to allocate from.",
        extensions=requires(Resource.EXTERNAL_ASSESSOR),
    )


@strawberry.type
class PeopleMutation:
    create_staff_member = mutation(
        people.create_staff_member,
        audit=AuditAction.STAFF_MEMBER_CREATED,
        input=CreateStaffMemberInput,
        repeat=refused(AlreadyExists, "already a member of staff here: nothing changes"),
        description="Create a staff member. Support in any organisation; admins in their own. "
        "An email already held by someone in the organisation gives that person these roles; "
        "only support can give a member of another organisation a membership here (one person "
        "in two organisations). Any other existing account answers AlreadyExistsError.",
        extensions=changes(Resource.STAFF, Action.CREATE),
    )
    create_external_assessor = mutation(
        people.create_external_assessor,
        audit=AuditAction.EXTERNAL_ASSESSOR_CREATED,
        input=CreateExternalAssessorInput,
        repeat=refused(AlreadyExists, "the email is taken: nothing is created"),
        description="Create an external assessor profile. Support only.",
        extensions=changes(Resource.EXTERNAL_ASSESSOR, Action.CREATE),
    )
    update_external_assessor = mutation(
        people.update_external_assessor,
        audit=AuditAction.EXTERNAL_ASSESSOR_UPDATED,
        input=UpdateExternalAssessorInput,
        repeat=unchanged("identical values: `unchanged: true`, no audit event"),
        description="Change an external assessor's profile: name, email, picture. Support only "
        "(an external assessor's name and email change only through support).",
        extensions=changes(Resource.EXTERNAL_ASSESSOR, Action.UPDATE),
    )
    update_staff_member = mutation(
        people.update_staff_member,
        audit=AuditAction.STAFF_MEMBER_UPDATED,
        input=UpdateStaffMemberInput,
        repeat=unchanged("identical values: `unchanged: true`, no audit event"),
        description="Change a staff member (admins of their organisation; support: the name "
        "and picture). "
        "A manager's team follows new units at once.",
        extensions=changes(Resource.STAFF, Action.UPDATE),
    )
    deactivate_staff_member = mutation(
        people.deactivate_staff_member,
        audit=AuditAction.STAFF_MEMBER_DEACTIVATED,
        input=DeactivateStaffMemberInput,
        repeat=unchanged(
            "deactivated already: `unchanged: true`, `endedAssignments: 0`, no audit event"
        ),
        description="Deactivate a staff member here (admins; a super admin only by a super "
        "admin, never the last active one): their sign-in for this organisation stops working "
        "at their next request, all their assignments here end (archived records included; "
        "history kept), and they stay visible in history.",
        extensions=changes(Resource.STAFF, Action.DEACTIVATE),
    )
