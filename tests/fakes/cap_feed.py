"""A CAP feed server on 127.0.0.1 (stdlib, in a thread): ATOM feeds and CAP files, with ETags."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from tests.cap import SCHEMA

CAP_TYPE = "application/cap+xml"
ATOM_TYPE = "application/atom+xml"


@dataclass
class CapFeedServer:
    """Serves `files` (path → (body, media type)); 304 for a matching If-None-Match."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, If-None-Match)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes | str, media_type: str = CAP_TYPE) -> str:
        self.files[path] = (body.encode() if isinstance(body, str) else body, media_type)
        return self.url(path)

    def feed(self, path: str, entries: list[str]) -> str:
        """An ATOM feed at `path` whose entries link the CAP files at `entries` (paths)."""
        items = "".join(
            f"<entry><id>{escape(self.url(e))}</id><title>{i}</title>"
            f"<updated>2026-12-07T10:00:00+07:00</updated>"
            f'<link rel="alternate" type="{CAP_TYPE}" href="{escape(e)}"/></entry>'
            for i, e in enumerate(entries)
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>{self.url(path)}</id><title>Cảnh báo</title>"
            f"<updated>2026-12-07T10:00:00+07:00</updated>{items}</feed>"
        )
        return self.put(path, body, ATOM_TYPE)

    def fetched(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


@contextmanager
def cap_feed_server() -> Iterator[CapFeedServer]:
    state = CapFeedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("If-None-Match")))
            found = state.files.get(self.path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, media_type = found
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", media_type + "; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def cap_alert(
    identifier: str,
    *,
    sender: str = "canhbao.example.vn",
    msg_type: str = "Alert",
    status: str = "Actual",
    references: str = "",
    infos: list[dict[str, str]] | None = None,
    sent: str = "2026-12-07T10:00:00+07:00",
) -> str:
    """A CAP 1.2 message; each info: language, headline, description, urgency, severity,
    category, area (areaDesc), geocode ("VN-XA=11914"), expires, instruction."""
    blocks = []
    for info in infos or []:
        geocode = ""
        if info.get("geocode"):
            name, _, value = info["geocode"].partition("=")
            geocode = f"<geocode><valueName>{name}</valueName><value>{value}</value></geocode>"
        blocks.append(
            "<info>"
            f"<language>{info.get('language', 'vi-VN')}</language>"
            f"<category>{info.get('category', 'Met')}</category>"
            f"<event>{escape(info.get('event', 'Bão'))}</event>"
            f"<urgency>{info.get('urgency', 'Immediate')}</urgency>"
            f"<severity>{info.get('severity', 'Severe')}</severity>"
            "<certainty>Likely</certainty>"
            + (f"<expires>{info['expires']}</expires>" if info.get("expires") else "")
            + f"<headline>{escape(info.get('headline', 'Bão số 3'))}</headline>"
            f"<description>{escape(info.get('description', 'Gió mạnh cấp 10.'))}</description>"
            + (
                f"<instruction>{escape(info['instruction'])}</instruction>"
                if info.get("instruction")
                else ""
            )
            + f"<area><areaDesc>{escape(info.get('area', ''))}</areaDesc>{geocode}</area>"
            "</info>"
        )
    refs = f"<references>{references}</references>" if references else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        f"<identifier>{identifier}</identifier><sender>{sender}</sender><sent>{sent}</sent>"
        f"<status>{status}</status><msgType>{msg_type}</msgType><scope>Public</scope>"
        f"{refs}{''.join(blocks)}</alert>"
    )
    # Like every CAP message the suite produces, a valid one (the broken ones the import
    # tests feed are written by hand).
    assert SCHEMA.validate(etree.fromstring(body.encode())), SCHEMA.error_log
    return body
