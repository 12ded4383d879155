"""Stored files over HTTP: whole or one byte range, checked by ETag, streamed from the store."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator, Mapping
from typing import BinaryIO, Final

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from audio.store import AssetStore

__all__ = ["Unsatisfiable", "parse_range", "stored_file"]

_CHUNK: Final = 64 * 1024
_RANGE: Final = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(Exception):
    """A Range header none of whose bytes exist (answered 416)."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) byte positions of a single-range ``Range`` header, inclusive.

    None means "serve the whole file": a malformed header, another unit, or several
    ranges (RFC 9110 lets a server ignore Range). Raises Unsatisfiable when the range
    starts at or past the end, or asks for an empty suffix.
    """
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # "bytes=-N": the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size - 1)


def _stream(fh: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``start`` (run in a worker thread by Starlette)."""
    try:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


async def stored_file(
    request: Request,
    store: AssetStore,
    key: str,
    *,
    etag: str,
    media_type: str,
    headers: Mapping[str, str] = {},
) -> Response | None:
    """The object under ``key`` as a response to ``request`` (GET or HEAD); None when the
    store has no such object (the caller answers 404 its own way).

    ``etag`` (quoted) answers If-None-Match with 304 and decides If-Range; a single
    ``Range`` gets 206 with Content-Range (416 when none of it exists). The object is
    opened through the store in a worker thread and streamed from there, so an object
    store needs no local file; the size is that of the object actually opened.
    ``headers`` (Cache-Control, Content-Disposition …) go on every answer.
    InvalidKeyError for a malformed key; the store's OSError when it cannot be read.
    """
    fh = await asyncio.to_thread(_open, store, key)
    if fh is None:
        return None
    try:
        size = await asyncio.to_thread(fh.seek, 0, io.SEEK_END)
    except BaseException:
        fh.close()
        raise
    answer = {**headers, "Accept-Ranges": "bytes", "ETag": etag}
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        fh.close()
        return Response(status_code=304, headers=answer)
    status, start, end = 200, 0, size - 1
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    # If-Range with another validator: the client's copy is stale, send everything.
    if range_header and (if_range is None or if_range.strip() == etag):
        try:
            wanted = parse_range(range_header, size)
        except Unsatisfiable:
            fh.close()
            return Response(status_code=416, headers={**answer, "Content-Range": f"bytes */{size}"})
        if wanted is not None:
            status, (start, end) = 206, wanted
            answer["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(0, end - start + 1)
    answer["Content-Length"] = str(length)
    if request.method == "HEAD":
        fh.close()
        return Response(status_code=status, headers=answer, media_type=media_type)
    return StreamingResponse(
        _stream(fh, start, length), status_code=status, headers=answer, media_type=media_type
    )


def _open(store: AssetStore, key: str) -> BinaryIO | None:
    try:
        return store.open(key)
    except FileNotFoundError:
        return None
