"""What the app holds for its lifetime: engine, sessions, policy, schema, sign-in, budgets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine
from db.session import session_maker
from policies.enforcer import PolicyStore
from schema import build_schema
from schema.extensions import QueryLimits
from server.auth import Authenticator
from server.commits import Commits
from server.fairuse import FairUse, Lanes, budget_key
from server.logs import count_statements
from server.settings import Settings, hs256_secret
from server.webhooks import Sender


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    maker: async_sessionmaker[AsyncSession]
    policies: PolicyStore
    schema: Any
    authenticator: Authenticator
    query_limits: QueryLimits
    fair_use: FairUse
    lanes: Lanes
    cold_lanes: Lanes  # one never-seen document at a time per credential
    commits: Commits  # news of commits, for the subscription hub and the webhook sender
    webhooks: Sender | None = None  # started with the app (CASELOAD_WEBHOOK_SENDER)

    @classmethod
    def build(cls, settings: Settings, policies: PolicyStore | None = None) -> Services:
        """`policies` replaces the policy loaded from policies/policy.csv (tests build mutants)."""
        # Refuses to start without one outside debug, unless a platform issuer signs people in.
        secret = hs256_secret(settings)
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
            random_page_cost=settings.db_random_page_cost,
            plan_cache_mode=settings.db_plan_cache_mode,
            statement_timeout_ms=settings.statement_timeout_ms,
        )
        count_statements(engine)
        maker = session_maker(engine)
        query_limits = limits_of(settings)
        authenticator = Authenticator(settings, secret, maker)
        fair_use = FairUse(settings)
        authenticator.on_key = lambda key, limit: fair_use.remember(budget_key(key, None), limit)
        return cls(
            settings=settings,
            engine=engine,
            maker=maker,
            policies=policies or PolicyStore(),
            schema=build_schema(query_limits),
            authenticator=authenticator,
            query_limits=query_limits,
            fair_use=fair_use,
            lanes=Lanes(settings.max_concurrent_per_credential, settings.max_queued_per_credential),
            cold_lanes=Lanes(1, settings.max_queued_per_credential),
            commits=commits_of(settings, engine),
        )

    def start_webhooks(self) -> Sender:
        """Start this process's webhook sender (once)."""
        if self.webhooks is None:
            self.webhooks = Sender(self.settings, commits=self.commits)
            self.webhooks.start()
        return self.webhooks

    async def aclose(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.aclose()
            self.webhooks = None
        await self.commits.aclose()
        await self.authenticator.usage.aclose()
        await self.fair_use.aclose()
        await self.engine.dispose()


def commits_of(settings: Settings, engine: AsyncEngine) -> Commits:
    """The news of commits to the database `engine` writes."""
    return Commits(
        settings.database_url, postgres=not settings.is_sqlite, local_key=str(engine.url)
    )


def limits_of(settings: Settings) -> QueryLimits:
    """The limits on what a document asks, from the settings."""
    return QueryLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
        page_size=settings.default_page_size,
        list_bound=settings.list_bound,
        count_cost=settings.count_cost,
        document_cache_bytes=settings.document_cache_bytes,
        introspection_cache_bytes=settings.document_cache_bytes // 4,
        persisted_query_cache_bytes=settings.persisted_query_cache_bytes,
        anonymous_introspection=settings.anonymous_introspection_enabled,
    )
