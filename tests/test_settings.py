"""Settings: defaults, .env, validation errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from haidang.settings import (
    Environment,
    Settings,
    SettingsError,
    load_settings,
    normalise_database_url,
)

SETTING_NAMES = [
    "ENVIRONMENT", "DATA_DIR", "DATABASE_URL", "HTTP_HOST", "HTTP_PORT", "PUBLIC_BASE_URL",
    "TIMEZONE", "LOG_LEVEL", "SECRET_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_API_BASE_URL",
    "TELEGRAM_WEBHOOK_SECRET", "ZALO_BOT_TOKEN", "ZALO_API_BASE_URL", "ZALO_WEBHOOK_SECRET",
    "TTS_ENGINE",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the checkout


def test_defaults_run_with_nothing_configured() -> None:
    settings = load_settings()
    assert settings.environment is Environment.development
    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite+aiosqlite:///var/haidang.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8000)
    assert settings.public_base_url is None
    assert settings.timezone == "Asia/Ho_Chi_Minh"
    assert settings.tz.key == "Asia/Ho_Chi_Minh"
    assert settings.telegram_bot_token is None and settings.zalo_bot_token is None
    assert str(settings.telegram_api_base_url) == "https://api.telegram.org/"
    assert settings.tts_engine.value == "auto"


def test_env_file_and_environment_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "HTTP_PORT=9001\nDATA_DIR=/srv/haidang\nPUBLIC_BASE_URL=\nTELEGRAM_BOT_TOKEN=123:abc\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.http_port == 9001
    assert settings.database_url == "sqlite+aiosqlite:////srv/haidang/haidang.db"
    assert settings.public_base_url is None  # blank means unset
    assert settings.log_level == "DEBUG"
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == "123:abc"
    assert "123:abc" not in repr(settings)  # secrets never print


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HTTP_PORT", "eighty", "HTTP_PORT"),
        ("HTTP_PORT", "70000", "HTTP_PORT"),
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE: unknown time zone"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL: must be a postgresql://"),
        ("PUBLIC_BASE_URL", "not a url", "PUBLIC_BASE_URL"),
        ("TTS_ENGINE", "festival", "TTS_ENGINE"),
        ("ZALO_WEBHOOK_SECRET", "short", "ZALO_WEBHOOK_SECRET: must be 8 to 256"),
        ("ENVIRONMENT", "staging", "ENVIRONMENT"),
        ("TELEGRAM_API_BASE_URL", "ftp://x", "TELEGRAM_API_BASE_URL"),
    ],
)
def test_a_wrong_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert fragment in str(caught.value)


@pytest.mark.parametrize("secret", ["change-me", "", "secret", "CHANGE-ME", "too-short-but-real"])
def test_production_refuses_a_placeholder_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings()


def test_production_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 48)
    assert load_settings().environment is Environment.production


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_a_bot_api_base_url_in_python_telegram_bots_form_is_accepted() -> None:
    # PTB's convention ends in /bot; we append /bot<token> ourselves (getMe gave 404).
    settings = Settings.model_validate(
        {
            "telegram_api_base_url": "http://127.0.0.1:8081/bot/",
            "zalo_api_base_url": "https://bot-api.zaloplatforms.com/bot",
        }
    )
    assert str(settings.telegram_api_base_url).rstrip("/") == "http://127.0.0.1:8081"
    assert str(settings.zalo_api_base_url).rstrip("/") == "https://bot-api.zaloplatforms.com"
