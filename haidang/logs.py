"""Logging set-up with redaction: no bot tokens, secrets or phone numbers reach the log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Telegram tokens look like 123456:ABC-xyz; Zalo's are "{bot_id}:{access_token}".
_BOT_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")
# Vietnamese phone numbers: 0 or +84 then 9-10 digits, with optional separators.
_PHONE = re.compile(r"(?<!\d)(?:\+?84|0)(?:[\s.-]?\d){8,10}(?!\d)")


class RedactingFilter(logging.Filter):
    """Replaces known secrets, bot tokens and phone numbers in every record's message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[REDACTED]")
        text = _BOT_TOKEN.sub("[TOKEN]", text)
        return _PHONE.sub("[PHONE]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        # Another handler may have formatted the record first and cached its traceback in
        # exc_text, unredacted: redact whatever is there, never trust the cache.
        if record.exc_info or record.exc_text:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
            record.exc_text = self.redact(text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_installed: list[logging.Handler] = []
# Libraries whose DEBUG output carries personal data (updates, request bodies). The Zalo
# SDK names its loggers "zaloBot.", "zaloBot.ext." ... (zalo_bot._utils.logging), not
# after its package.
THIRD_PARTY = ("telegram", "zalo_bot", "zaloBot", "aiohttp", "uvicorn", "asyncio")
# Libraries held at WARNING: httpx logs every request URL at INFO (a Telegram URL carries
# the bot token), SQLAlchemy echoes every statement with its parameters at INFO, and
# aiosqlite at DEBUG (names, phones, what people wrote), boto3's botocore every request's
# signed headers and body at DEBUG (ASSET_STORE=s3).
AT_WARNING = (
    "httpx", "httpcore", "apscheduler", "sqlalchemy", "aiosqlite", "boto3", "botocore",
    "s3transfer", "urllib3",
)  # fmt: skip


def configure(level: str, secrets: Iterable[str] = ()) -> None:
    """Send logs to stderr at `level`, redacted; quiet the HTTP clients that echo bot URLs.

    Calling it again replaces only the handler it installed, never anyone else's.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    while _installed:
        root.removeHandler(_installed.pop())
    root.addHandler(handler)
    _installed.append(handler)
    root.setLevel(level)
    for noisy in AT_WARNING:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # At DEBUG the chat libraries log whole updates and requests (chat ids, names, what
    # people wrote): personal data the redaction cannot recognise. They stop at INFO.
    for chatty in THIRD_PARTY:
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))
