"""The typed context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from db.session import Database
from policies.enforcer import Policy
from policies.principal import Principal
from resolvers.errors import Unauthenticated

if TYPE_CHECKING:
    from resolvers.loaders import Loaders


@dataclass(frozen=True)
class Limits:
    default_page_size: int = 50
    max_page_size: int = 500
    max_bulk_items: int = 1000


@dataclass
class Context:
    db: Database
    now: datetime
    principal: Principal | None
    policy: Policy | None
    limits: Limits = field(default_factory=Limits)
    client: str | None = None
    _loaders: Loaders | None = None

    @property
    def me(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("Sign in first.")
        return self.principal

    @property
    def rules(self) -> Policy:
        if self.policy is None:
            raise Unauthenticated("Sign in first.")
        return self.policy

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            from resolvers.loaders import Loaders

            self._loaders = Loaders(self)
        return self._loaders
