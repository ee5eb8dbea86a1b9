"""Settings from the environment (prefix CASELOAD_) or a .env file."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """`var/` of the checkout the code runs from; else the user's data directory.

    Resolved from the package's location, never the working directory, so that the server
    and the command line find the same database and development secret wherever they run.
    """
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if pyproject.is_file() and 'name = "caseload"' in pyproject.read_text():
        return PROJECT_ROOT / "var"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "caseload"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASELOAD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""  # default: SQLite in data_dir
    db_pool_size: int = 10
    db_max_overflow: int = 0
    # How long a request waits for a pooled connection before answering UNAVAILABLE.
    db_pool_timeout: float = 30.0
    # Every statement is stopped past this (0: unbounded); the request answers TIMEOUT.
    statement_timeout_ms: int = Field(default=5000, ge=0)
    # PostgreSQL's planner cost of a random page read for Caseload's sessions (None: the
    # server's own, 4 by default, which assumes disks without a cache).
    db_random_page_cost: float | None = 1.1
    # How PostgreSQL plans Caseload's prepared statements (asyncpg prepares and keeps each):
    # one generic plan per statement instead of planning every execution (with the server's
    # `auto`, the one-statement reads stay on custom plans, planned anew each time: q1n's
    # statement took 2.25 ms there and 1.13 ms with a generic plan). Empty: the server's own.
    db_plan_cache_mode: Literal["auto", "force_generic_plan", "force_custom_plan"] | None = (
        "force_generic_plan"
    )
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "caseload"
    jwt_audience: str = "caseload-api"
    jwt_ttl_seconds: int = 3600
    # Sign-in through OpenID Connect: the platform's issuer (its keys found through
    # {issuer}/.well-known/openid-configuration), or its keys' URL alone. Its tokens must name
    # CASELOAD_JWT_AUDIENCE; the person is the email claim, the organisation the org claim (a
    # slug), else the X-Caseload-Organisation header, else the person's only membership.
    oidc_issuer: str | None = None
    jwks_url: str | None = None
    oidc_email_claim: str = "email"
    oidc_org_claim: str = "org"
    # A provider's keys are fetched again for a token naming a key not seen yet, at most this
    # often per issuer; and, served from the cache meanwhile, once they are this old.
    oidc_refetch_seconds: float = Field(default=60.0, ge=0)
    oidc_keys_max_age_seconds: float = Field(default=3600.0, gt=0)
    # How long one fetch of a discovery document or of keys may take.
    oidc_fetch_timeout_seconds: float = Field(default=5.0, gt=0)
    # Issuers over plain http (a provider on the same machine, for tests); https otherwise.
    oidc_allow_http: bool = False
    debug: bool = False
    demo: bool = False
    migrate_on_start: bool = True

    graphiql: bool | None = None  # default: on in debug or demo
    anonymous_introspection: bool | None = None  # default: on in debug or demo
    allowed_origins: str = ""  # comma-separated origins allowed by CORS
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    default_page_size: int = 50
    max_page_size: int = 500
    max_bulk_items: int = 1000
    max_search_length: int = 100  # characters of a search term (INVALID above)
    # How long the change feed keeps changes; an older cursor is INVALID (resync from the lists).
    changes_retention_days: int = Field(default=30, ge=1)
    # How often each process deletes the changes older than that (a bounded number a run).
    changes_prune_seconds: float = Field(default=3600, gt=0)
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000
    # Queries whose every field has a declared source run as one SQL statement.
    compiled_reads: bool = True
    # Planning a document for the compiled path stops past this; the executor answers it.
    plan_budget_ms: int = Field(default=50, ge=0)
    max_cost: int = 50_000  # node estimate of one request
    list_bound: int = 10  # what the estimate counts for a list that declares no bound
    count_cost: int = 2_000  # what the estimate counts for a totalCount
    # Parsed documents kept for callers who signed in, and anonymous introspection answers.
    document_cache_bytes: int = 64 * 1024 * 1024
    # Documents registered by their SHA-256 (automatic persisted queries), by callers who
    # signed in.
    persisted_query_cache_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    # A JSON file of trusted documents, id → document (as GraphQL codegen's client preset
    # writes persisted-documents.json): when set, only these are run, named by id.
    trusted_documents: Path | None = None
    idempotency_ttl_seconds: int = 24 * 3600
    # Fair use: cost points each credential may spend a minute (an API key may have its own).
    # 1,000 requests a second of cost 10,000 from one credential spend 600,000,000.
    rate_points_per_minute: int = Field(default=1_000_000_000, gt=0)
    # Budgets shared by every process through Redis (redis:// or rediss://); else per process.
    # Secret: the URL may hold a password.
    redis_url: SecretStr | None = None
    redis_key_prefix: str = "caseload"
    # Requests of one credential running at once in a process, and waiting their turn.
    max_concurrent_per_credential: int = Field(default=4, gt=0)
    max_queued_per_credential: int = Field(default=100, ge=0)
    # Subscriptions (graphql-transport-ws on /graphql): at once on one websocket, and of one
    # credential in one process; changes waiting to be sent to one subscription before its
    # websocket is closed (1013); how long a websocket may wait before `connection_init`
    # (4408); how often the outbox is read, and credentials checked, without news of a commit.
    subscriptions_per_connection: int = Field(default=20, gt=0)
    subscriptions_per_credential: int = Field(default=100, gt=0)
    subscription_queue: int = Field(default=200, gt=0)
    subscription_init_timeout_seconds: float = Field(default=10.0, gt=0)
    subscription_sweep_seconds: float = Field(default=5.0, gt=0)
    # Webhooks: endpoints may be plain http, and may reach private, loopback and link-local
    # addresses (both off: for tests and closed networks only).
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    # Waits before each retry of a failed delivery (s, m, h, d); after the last, the endpoint
    # is disabled. The default retries for about a day.
    webhook_retry_schedule: str = "5s,5m,30m,2h,5h,10h,10h"
    # Every server process runs a webhook sender; false leaves sending to `caseload worker`.
    webhook_sender: bool = True

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: object) -> object:
        if value is None or value == "":
            return default_data_dir()
        return Path(str(value)).expanduser().resolve()

    @field_validator("trusted_documents", mode="before")
    @classmethod
    def _trusted_documents(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return Path(str(value)).expanduser()

    @field_validator("db_random_page_cost", "db_plan_cache_mode", mode="before")
    @classmethod
    def _random_page_cost(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str) and not value.strip().startswith(("redis://", "rediss://")):
            raise ValueError("write redis://host[:port][/db] or rediss://… (TLS)")
        return value.strip() if isinstance(value, str) else value

    @field_validator("oidc_issuer", "jwks_url", mode="before")
    @classmethod
    def _optional_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str) and not value.strip().startswith(("https://", "http://")):
            raise ValueError("write an https:// URL")
        return value.strip() if isinstance(value, str) else value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        parse_waits(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in _split(value):
            url = origin.split("://", 1)
            if origin != "*" and (
                len(url) != 2 or url[0] not in ("http", "https") or "/" in url[1] or not url[1]
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme://host[:port], "
                    "e.g. https://app.example"
                )
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        for name in ("oidc_issuer", "jwks_url"):
            url = getattr(self, name)
            if url is not None and url.startswith("http://") and not self.oidc_allow_http:
                raise ValueError(
                    f"CASELOAD_{name.upper()} must be an https:// URL "
                    "(CASELOAD_OIDC_ALLOW_HTTP=true allows http, for a provider under test)"
                )
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'caseload.sqlite3'}"
        return self

    @property
    def oidc_enabled(self) -> bool:
        """A platform issuer is set: its tokens sign people in."""
        return self.oidc_issuer is not None or self.jwks_url is not None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else self.debug or self.demo

    @property
    def anonymous_introspection_enabled(self) -> bool:
        if self.anonymous_introspection is not None:
            return self.anonymous_introspection
        return self.debug or self.demo

    @property
    def origins(self) -> list[str]:
        return [o.rstrip("/") for o in _split(self.allowed_origins)]

    @property
    def webhook_retries(self) -> list[timedelta]:
        return parse_waits(self.webhook_retry_schedule)

    @property
    def secret_path(self) -> Path:
        """Where the development secret lives (debug and demo only)."""
        return self.data_dir / "jwt-secret"

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        return None if not database or database == ":memory:" else Path(database)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_waits(value: str) -> list[timedelta]:
    """`5s,5m,2h` as waits; ValueError naming the part that is not one."""
    waits = []
    for part in _split(value):
        number, unit = part[:-1], part[-1:].lower()
        try:
            amount = float(number)
        except ValueError:
            amount = -1.0
        if unit not in _UNITS or not amount > 0:
            raise ValueError(f"{part!r} is not a wait: write e.g. 5s, 5m, 2h or 1d")
        waits.append(timedelta(seconds=amount * _UNITS[unit]))
    return waits


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class ConfigurationError(RuntimeError):
    pass


def hs256_secret(settings: Settings) -> str | None:
    """The secret HS256 tokens are checked with when the server starts: with a platform issuer,
    only an explicit CASELOAD_JWT_SECRET (None: HS256 tokens are refused)."""
    if settings.oidc_enabled:
        explicit = settings.jwt_secret
        return explicit.get_secret_value() if explicit and explicit.get_secret_value() else None
    return jwt_secret(settings)


def jwt_secret(settings: Settings, *, existing_ok: bool = False) -> str:
    """The configured secret; in debug or demo, one generated on first use and kept on disk.

    `existing_ok` lets a tool that only signs (`caseload tokens mint`) use a development
    secret that a demo server already made, without turning debug on.
    """
    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings.jwt_secret.get_secret_value()
    path = settings.secret_path
    if existing_ok and path.is_file():
        return path.read_text().strip()
    if not (settings.debug or settings.demo):
        raise ConfigurationError(
            "CASELOAD_JWT_SECRET is not set. Set it to a long random string "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`), "
            f"or set CASELOAD_DEBUG=true for a development secret kept in {path} "
            "(the demo, `make serve`, makes one there)."
        )
    if not path.exists():
        _create_secret(path)
    return path.read_text().strip()


def _create_secret(path: Path) -> None:
    """Write a new secret atomically: several processes starting at once agree on one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process made it first; use theirs
    finally:
        draft.unlink()
