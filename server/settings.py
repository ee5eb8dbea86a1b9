"""Settings from the environment (prefix CASELOAD_) or a .env file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASELOAD_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/caseload.sqlite3"
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "caseload"
    jwt_audience: str = "caseload-api"
    jwt_ttl_seconds: int = 3600
    debug: bool = False
    migrate_on_start: bool = True
    data_dir: Path = Path("var")

    default_page_size: int = 50
    max_page_size: int = 500
    max_bulk_items: int = 1000
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        database = make_url(self.database_url).database
        return None if not database or database == ":memory:" else Path(database)


class ConfigurationError(RuntimeError):
    pass


def jwt_secret(settings: Settings) -> str:
    """The configured secret; in debug, one generated on first start and kept on disk."""
    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings.jwt_secret.get_secret_value()
    if not settings.debug:
        raise ConfigurationError(
            "CASELOAD_JWT_SECRET is not set. Set it to a long random string "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`), "
            "or set CASELOAD_DEBUG=true for a development secret kept beside the database."
        )
    sqlite = settings.sqlite_path()
    folder = sqlite.parent if sqlite is not None else settings.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "jwt-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()
