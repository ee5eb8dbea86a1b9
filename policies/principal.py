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
