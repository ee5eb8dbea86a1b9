"""The typed context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from db.session import Database
from policies.enforcer import Policy
from policies.principal import Principal
from resolvers.errors import Unauthenticated


@dataclass(frozen=True)
class Limits:
    default_page_size: int = 50
    max_page_size: int = 500
    max_bulk_items: int = 1000
    max_search_length: int = 100  # characters of a search term, without the whitespace around it
    changes_retention_days: int = 30  # how far back the change feed reads
    allow_http_issuers: bool = False  # identity providers over plain http (tests only)
    webhook_allow_http: bool = False  # webhook endpoints may be plain http
    webhook_allow_private: bool = False  # and reach private, loopback, link-local addresses


class LoaderGroup:
    """One domain's dataloaders for one request, built on first use (see `Context.loaders`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx


G = TypeVar("G", bound=LoaderGroup)


@dataclass
class Context:
    db: Database
    now: datetime
    principal: Principal | None
    policy: Policy | None
    limits: Limits = field(default_factory=Limits)
    client: str | None = None  # derived from the credential: "jwt" or "api-key:<prefix>"
    user_agent: str | None = None  # what the client says it is; not verified
    _groups: dict[type[LoaderGroup], LoaderGroup] = field(default_factory=dict)

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

    def loaders(self, group: type[G]) -> G:
        """The request's instance of a domain's loader group."""
        found = self._groups.get(group)
        if found is None:
            found = self._groups[group] = group(self)
        assert isinstance(found, group)
        return found
