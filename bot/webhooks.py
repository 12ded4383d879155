"""Reading a webhook's body: bounded in size, strict JSON, never a 5xx for a bad update.

Also the checks the adapters apply to an update's fields. The SDKs (python-telegram-bot,
python-zalo-bot) build objects from whatever JSON they are given without checking a
single type, so `message.text` can arrive as a dict, a chat id as a list, a string with
a lone surrogate: each of those, passed on, failed deep in the core or the database.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response

log = logging.getLogger(__name__)

# A Telegram or Zalo update is a few kilobytes; a photo comes as a file id, never inline.
MAX_BODY = 1024 * 1024
# Integers in updates are 64-bit on both platforms (Telegram ids fit in 52 bits).
MAX_INT = 2**63 - 1
REASON_LENGTH = 200


T = TypeVar("T")


def webhook_secret_ok(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so the secret cannot be guessed byte by byte from timings."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def receive(
    request: Request,
    *,
    platform: str,
    secret: str | None,
    header: str,
    parse: Callable[[dict[str, Any]], T | None],
    keep: Callable[[Sequence[T]], Awaitable[object]],
) -> Response:
    """A webhook POST: the secret in `header` checked in constant time (403, unread, when
    wrong), the body parsed into an arrival (None: nothing to answer; an error: dropped
    with one line, 200) and kept by `keep` before the 200 (503 when it could not be kept:
    the platform redelivers). Makes no Bot API call, so a web replica needs no token."""
    if secret is None or not webhook_secret_ok(secret, request.headers.get(header)):
        return Response(status_code=403)
    try:
        body = await read_object(request)
    except BadBody as refused:
        return refused.response
    try:
        arrival = parse(body)
    except Exception as exc:  # valid JSON but no update (missing fields, wrong types)
        return dropped(platform, exc)
    if arrival is not None:
        try:
            await keep([arrival])
        except Exception as exc:  # not kept: the platform redelivers after a 5xx
            log.warning("%s: webhook update not kept (%s)", platform, one_line(exc))
            return Response(status_code=503)
    return Response(status_code=200)


class BadBody(Exception):
    """The body cannot be an update; `response` is what the platform gets (413 or 400)."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.response = Response(status_code=status_code)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python accepts them, JSON does not


async def read_object(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object, read at most `limit` bytes far.

    Raises BadBody(413) when the body is larger (told by Content-Length, or found while
    reading, before anything is parsed), BadBody(400) when it is no JSON object: not JSON,
    NaN, nested too deep for the parser, or an array, string or number. A platform
    re-delivers an update answered with a 5xx, so a bad one must never get one.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadBody(413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadBody(413)
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadBody(400) from None
    if not isinstance(value, dict):
        raise BadBody(400)
    return value


class NotAnUpdate(ValueError):
    """A field of an update has a type or value the platform never sends."""


def checked_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotAnUpdate(f"{field} is {type(value).__name__}, not an integer")
    if abs(value) > MAX_INT:
        raise NotAnUpdate(f"{field} is out of the 64-bit range")
    return value


def checked_text(value: object, field: str, *, max_length: int | None = None) -> str:
    """A string the database and the platforms can take: UTF-8 encodable, no NUL."""
    if not isinstance(value, str):
        raise NotAnUpdate(f"{field} is {type(value).__name__}, not text")
    try:
        value.encode("utf-8")  # lone surrogates ("\ud800" in JSON) cannot be stored or sent
    except UnicodeEncodeError:
        raise NotAnUpdate(f"{field} is no valid Unicode") from None
    if "\x00" in value:  # PostgreSQL refuses NUL in text; no person types one
        raise NotAnUpdate(f"{field} has a NUL character")
    if max_length is not None and len(value) > max_length:
        raise NotAnUpdate(f"{field} is longer than {max_length} characters")
    return value


def checked_optional_text(
    value: object, field: str, *, max_length: int | None = None
) -> str | None:
    return None if value is None else checked_text(value, field, max_length=max_length)


def checked_id(value: object, field: str, *, max_length: int) -> str:
    """An id as the core keeps it (a string column of `max_length`): text or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(checked_int(value, field))
    found = checked_text(value, field, max_length=max_length)
    if not found.strip():
        raise NotAnUpdate(f"{field} is empty")
    return found


def checked_coordinate(value: object, field: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NotAnUpdate(f"{field} is {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number) or abs(number) > limit:
        raise NotAnUpdate(f"{field} is out of range")
    return number


def one_line(error: BaseException) -> str:
    """An exception as one short log line: its type and the start of its message.

    Newlines are folded (a log line per event stays one line) and what cannot be written
    as UTF-8 is escaped (a lone surrogate would make the log handler itself fail).
    """
    message = " ".join(str(error).split())
    if len(message) > REASON_LENGTH:
        message = message[:REASON_LENGTH] + "…"
    line = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def dropped(platform: str, error: BaseException) -> Response:
    """Log an update that cannot be handled in one line, and answer 200.

    Both platforms redeliver an update answered with anything but 2xx, and a malformed
    one would fail the same way every time: a 200 ends that loop. No traceback: the
    fault is in the update, not in our code, and a sender could otherwise fill the log.
    """
    log.warning("%s: webhook update dropped: %s", platform, one_line(error))
    return Response(status_code=200)
