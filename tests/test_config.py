from __future__ import annotations

from pathlib import Path

import pytest

from agrimarket.cli import main
from agrimarket.config import ConfigurationError, Environment, Settings, get_settings, new_fernet_key


def test_production_without_secrets_refuses_to_start_naming_each_missing_one(tmp_path: Path) -> None:
    settings = Settings(env=Environment.production, data_dir=tmp_path)
    with pytest.raises(ConfigurationError) as raised:
        settings.check_secrets()
    assert "AGRIMARKET_SECRET_KEY" in str(raised.value)
    assert "AGRIMARKET_ENCRYPTION_KEYS" in str(raised.value)
    assert not (tmp_path / "dev-secrets.json").exists()


def test_production_with_secrets_starts(tmp_path: Path) -> None:
    settings = Settings(
        env=Environment.production,
        data_dir=tmp_path,
        secret_key="s" * 40,
        encryption_keys=new_fernet_key(),
    )
    settings.check_secrets()
    assert settings.secure_cookies
    assert settings.json_logs


def test_serve_in_production_without_secrets_exits_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGRIMARKET_ENV", "production")
    monkeypatch.setenv("AGRIMARKET_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AGRIMARKET_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["serve"]) == 2
    finally:
        get_settings.cache_clear()
    assert "Missing required secret(s) in production" in capsys.readouterr().err


def test_development_keys_are_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path)
    first.check_secrets()
    second = Settings(data_dir=tmp_path)
    second.check_secrets()
    assert first.secret_key is not None
    assert second.secret_key is not None
    assert first.secret_key.get_secret_value() == second.secret_key.get_secret_value()
    assert [k.get_secret_value() for k in first.encryption_keys] == [
        k.get_secret_value() for k in second.encryption_keys
    ]
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_encryption_keys_come_comma_separated_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    newest, older = new_fernet_key(), new_fernet_key()
    monkeypatch.setenv("AGRIMARKET_ENCRYPTION_KEYS", f"{newest}, {older}")
    keys = Settings().encryption_keys
    assert [k.get_secret_value() for k in keys] == [newest, older]


def test_database_defaults_to_sqlite_in_the_data_dir_and_migrates_itself(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.as_posix()}/agrimarket.db"
    assert settings.should_auto_migrate
    postgres = Settings(database_url="postgresql+psycopg://localhost/x")
    assert not postgres.should_auto_migrate
