"""Typed settings: the only code that reads the environment or `.env`."""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values copied from .env.example or docs; none of them may sign a production session.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev", "development"})
DEV_SECRET_KEY = "change-me"  # noqa: S105 - the development placeholder production refuses


class Environment(enum.StrEnum):
    development = "development"  # a developer's machine: placeholder secret allowed
    production = "production"  # a real deployment: every secret must be real


class TtsEngineChoice(enum.StrEnum):
    auto = "auto"  # online engine first, offline engine when it fails or hangs
    gtts = "gtts"  # Google's online voice only
    espeak = "espeak"  # the offline engine only (no network needed)


class AssetStoreChoice(enum.StrEnum):
    local = "local"  # files under DATA_DIR (audio/, documents/): one machine
    s3 = "s3"  # an S3-compatible bucket (S3_*): shared by every process of a deployment


# An S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens (AWS's rule, which
# the S3-compatible servers follow).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Settings(BaseSettings):
    """Every setting of the service; build once with `load_settings()` and pass it down."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    environment: Environment = Environment.development
    data_dir: Path = Path("./var")
    # Below this much free space in DATA_DIR, /healthz answers 503: the SQLite database,
    # audio renders and uploads all write there, and fail once it is full.
    data_dir_min_free_mb: Annotated[int, Field(ge=0)] = 200
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    public_base_url: AnyHttpUrl | None = None
    # The <sender> of the CAP alerts (broadcasts.cap): a name no other alerting authority
    # uses, such as this service's domain. Unset: see `cap_sender_name`.
    cap_sender: Annotated[str, Field(pattern=r"^[^\s,<&]+$", max_length=120)] | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
    log_level: str = "INFO"
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # How long a bot's lease (`sender:<bot id>`: its front end, answers and sender) outlives
    # the process holding it: a worker that dies is replaced within about this long.
    bot_lease_ttl_s: Annotated[float, Field(ge=1.0, le=300.0)] = 10.0
    # The PostgreSQL connection pool of one process (haidang.pool): unset, sized from the
    # roles it runs (web 5+5, worker 10+10, scheduler 2+0, summed). SQLite ignores them.
    db_pool_size: Annotated[int, Field(ge=1, le=200)] | None = None
    db_max_overflow: Annotated[int, Field(ge=0, le=200)] | None = None
    # How long a unit of work waits for a free connection before failing, and how old a
    # connection may get before it is replaced (a proxy or firewall may drop idle ones).
    db_pool_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    db_pool_recycle_s: Annotated[int, Field(ge=-1)] = 1800

    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: AnyHttpUrl = AnyHttpUrl("https://api.telegram.org")
    telegram_webhook_secret: SecretStr | None = None
    zalo_bot_token: SecretStr | None = None
    zalo_api_base_url: AnyHttpUrl = AnyHttpUrl("https://bot-api.zaloplatforms.com")
    zalo_webhook_secret: SecretStr | None = None
    # The Zalo bot's public link (from Zalo Bot Manager) for the QR posters; Zalo links
    # carry no start payload, so the poster says to send the commune's name.
    zalo_bot_link: AnyHttpUrl | None = None

    tts_engine: TtsEngineChoice = TtsEngineChoice.auto
    # What TTS_ENGINE=auto tries before the offline voice: gtts, or an engine another
    # installed package registers (entry point group "haidang.tts_engines"), with options.
    tts_online_engine: Annotated[str, Field(min_length=1, max_length=40)] = "gtts"
    tts_engine_options: SecretStr | None = None
    # How bulletins sound besides their words (audio.studio.Production).
    audio_heading: bool = True
    audio_jingle: Path | None = None
    audio_compression: bool = True
    audio_compression_ratio: Annotated[float, Field(ge=1.2, le=10.0)] = 2.5

    # The commune loudspeaker stations (audio.station, run by the worker role when
    # Liquidsoap and Icecast 2 are installed): Icecast's port and bind address, the base URL
    # operators reach the mounts at (e.g. behind a proxy), an audio file played between
    # programmes (silence when unset), and the local times the day's programme airs.
    station_port: Annotated[int, Field(ge=1, le=65535)] = 8010
    station_host: str = "127.0.0.1"
    station_public_url: AnyHttpUrl | None = None
    station_filler: Path | None = None
    station_programme_times: str = "06:00,17:00"

    # Where audio, photos and document files are kept (haidang.stores): DATA_DIR, or an
    # S3-compatible bucket. The key id and secret are secrets (never logged or shown);
    # unset, boto3 looks for credentials the usual AWS ways (AWS_* variables, a role).
    asset_store: AssetStoreChoice = AssetStoreChoice.local
    s3_endpoint_url: AnyHttpUrl | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    def first_bot_token(self, platform: str) -> SecretStr | None:
        """The token of a platform's first bot ("telegram", "zalo"): TELEGRAM_BOT_TOKEN or
        ZALO_BOT_TOKEN. Further bots keep theirs in the database (broadcasts.bots)."""
        return {"telegram": self.telegram_bot_token, "zalo": self.zalo_bot_token}.get(platform)

    def first_bot_tokens(self, platform: str) -> list[str]:
        """The first bot's token as a list (empty when unset): the bot account it names is
        taken for broadcasts.bots.add."""
        token = self.first_bot_token(platform)
        return [token.get_secret_value().strip()] if token is not None else []

    @field_validator("tts_engine_options", mode="before")
    @classmethod
    def _options_object(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        try:
            parsed = json.loads(str(raw))
        except ValueError:
            raise ValueError('must be a JSON object, e.g. {"api_key": "..."}') from None
        if not isinstance(parsed, dict):
            raise ValueError('must be a JSON object, e.g. {"api_key": "..."}')
        return value

    @property
    def tts_options(self) -> dict[str, object]:
        """TTS_ENGINE_OPTIONS parsed (a secret: may hold an API key; never logged)."""
        if self.tts_engine_options is None:
            return {}
        parsed: dict[str, object] = json.loads(self.tts_engine_options.get_secret_value())
        return parsed

    @field_validator("db_pool_size", "db_max_overflow", mode="before")
    @classmethod
    def _blank_pool_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("station_programme_times")
    @classmethod
    def _programme_times(cls, value: str) -> str:
        _parse_times(value)
        return value

    @field_validator("audio_jingle", "station_filler", mode="before")
    @classmethod
    def _jingle_file(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None  # `AUDIO_JINGLE=` means no jingle (and `STATION_FILLER=` silence)
        if value is not None and not Path(str(value)).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("s3_endpoint_url", mode="after")
    @classmethod
    def _no_credentials_in_url(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # The URL is shown in logs and errors; keys belong in S3_ACCESS_KEY_ID/…_SECRET….
        if value is not None and (value.username or value.password):
            raise ValueError(
                "must not carry credentials; use S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
            )
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET.match(value):
            raise ValueError("must be an S3 bucket name: 3-63 of a-z, 0-9, '.' and '-'")
        return value

    @field_validator(
        "public_base_url", "zalo_bot_link", "s3_endpoint_url", "s3_bucket", "s3_region",
        "cap_sender", "station_public_url", mode="before",
    )  # fmt: skip
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # `PUBLIC_BASE_URL=` in a .env means "not set", not an invalid URL.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("telegram_api_base_url", "zalo_api_base_url", mode="before")
    @classmethod
    def _server_not_bot_prefix(cls, value: object) -> object:
        # python-telegram-bot's own convention is a base URL ending in /bot (the token is
        # appended to it); we append "/bot<token>" ourselves, so accept that form too
        # instead of calling .../bot/bot<token> and failing on getMe with a 404.
        if isinstance(value, str):
            value = value.strip().rstrip("/")
            if value.endswith("/bot"):
                value = value.removesuffix("/bot")
        return value

    @field_validator(
        "telegram_bot_token",
        "telegram_webhook_secret",
        "zalo_bot_token",
        "zalo_webhook_secret",
        "s3_access_key_id",
        "s3_secret_access_key",
        mode="before",
    )
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value) if value else value

    @field_validator("zalo_webhook_secret")
    @classmethod
    def _zalo_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        # The Zalo Bot API refuses webhook secrets outside 8-256 characters.
        if value is not None and not 8 <= len(value.get_secret_value()) <= 256:
            raise ValueError("must be 8 to 256 characters (Zalo's limit)")
        return value

    @model_validator(mode="after")
    def _defaults_and_production_rules(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{(self.data_dir / 'haidang.db').as_posix()}"
        if self.asset_store is AssetStoreChoice.s3 and self.s3_bucket is None:
            raise ValueError("ASSET_STORE=s3 needs S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither")
        if self.environment is Environment.production:
            if self.secret_key.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    "SECRET_KEY is a placeholder; set a long random value in production"
                )
            if len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("SECRET_KEY must be at least 32 characters in production")
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        """The local zone (Asia/Ho_Chi_Minh by default) for cron and display."""
        return ZoneInfo(self.timezone)

    @property
    def cap_sender_name(self) -> str:
        """CAP_SENDER, else PUBLIC_BASE_URL's host, else "haidang.invalid" (a reserved name
        that never resolves: alerts from an unconfigured machine name no real sender)."""
        if self.cap_sender:
            return self.cap_sender
        host = self.public_base_url.host if self.public_base_url else None
        return host or "haidang.invalid"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"

    @property
    def station_dir(self) -> Path:
        """The station's work dir (generated configuration, pid files, logs, socket)."""
        return self.data_dir / "station"

    @property
    def programme_times(self) -> list[dt.time]:
        """STATION_PROGRAMME_TIMES as sorted local times of day."""
        return _parse_times(self.station_programme_times)


def _parse_times(text: str) -> list[dt.time]:
    """ "06:00,17:00" → [06:00, 17:00] (seconds allowed: "06:00:30"); ValueError names a
    bad entry."""
    times: set[dt.time] = set()
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            fields = [int(field) for field in part.strip().split(":")]
            if len(fields) not in (2, 3):
                raise ValueError(part)
            times.add(dt.time(fields[0], fields[1], fields[2] if len(fields) == 3 else 0))
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not a time like 06:00") from None
    return sorted(times)


def normalise_database_url(url: str) -> str:
    """Give a plain `postgresql://` or `sqlite:///` URL the async driver we ship."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgresql+psycopg2://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return url
    raise ValueError("must be a postgresql:// or sqlite:/// URL")


class SettingsError(Exception):
    """A setting has a wrong value; the message names it."""


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment and `.env`; raise SettingsError naming the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
        raise SettingsError("invalid setting: " + "; ".join(lines)) from None
