"""Who is asking: the authenticated identity a request acts as."""

from __future__ import annotations

from dataclasses import dataclass

from db.models import UserKind
from policies.vocabulary import Role


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    kind: UserKind
    roles: frozenset[Role]
    organisation_id: int | None = None
    location_id: int | None = None
    department_id: int | None = None
    api_key_id: int | None = None
    client: str | None = None
    # The system acting for an operator (the command line): no user to name as actor.
    system: bool = False

    @property
    def actor_id(self) -> int | None:
        """The user the audit trail and `createdBy` name: nobody when the system acts."""
        return None if self.system else self.user_id


# The system principal's user id: no row is numbered 0, so its user-scoped predicates match
# nothing; it acts through its organisation's scopes only.
SYSTEM_USER_ID = 0


def system_principal(organisation_id: int, client: str = "cli") -> Principal:
    """The operator at the command line, acting in one organisation as a super admin would
    (the CLI already holds the database): changes it makes name no actor."""
    return Principal(
        SYSTEM_USER_ID,
        UserKind.SERVICE,
        frozenset({Role.SUPER_ADMIN}),
        organisation_id=organisation_id,
        client=client,
        system=True,
    )
