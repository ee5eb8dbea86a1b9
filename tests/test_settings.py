"""Secrets: never hard-coded; generated and kept in debug; refused otherwise."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.cli import main
from server.settings import ConfigurationError, Settings, jwt_secret


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[arg-type]


def test_missing_secret_is_refused_outside_debug(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CASELOAD_JWT_SECRET"):
        jwt_secret(_settings(tmp_path, debug=False))


def test_debug_generates_a_secret_in_the_data_directory_and_keeps_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path, debug=True)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'caseload.sqlite3'}"
    first = jwt_secret(settings)
    path = tmp_path / "data" / "jwt-secret"
    assert path.exists() and len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert jwt_secret(settings) == first
    assert jwt_secret(_settings(tmp_path, demo=True)) == first  # the demo uses it too
    assert list(path.parent.iterdir()) == [path]  # no drafts left behind


def test_configured_secret_wins(tmp_path: Path) -> None:
    assert jwt_secret(_settings(tmp_path, jwt_secret="configured-" * 4)) == "configured-" * 4


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASELOAD_MAX_PAGE_SIZE", "200")
    monkeypatch.setenv("CASELOAD_DEBUG", "true")
    settings = Settings(_env_file=None)
    assert settings.max_page_size == 200 and settings.debug is True


def test_cli_refuses_to_serve_without_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASELOAD_JWT_SECRET", raising=False)
    monkeypatch.setenv("CASELOAD_DEBUG", "false")
    monkeypatch.setenv("CASELOAD_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    assert main(["serve", "--port", "1"]) == 2
    assert "CASELOAD_JWT_SECRET is not set" in capsys.readouterr().err
