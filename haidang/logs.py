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
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


_installed: list[logging.Handler] = []


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
    # httpx logs every request URL at INFO, and a Telegram URL carries the bot token.
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
