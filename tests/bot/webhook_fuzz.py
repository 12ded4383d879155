"""Seeded generator of webhook requests: updates that look real, mutated at every level.

Deterministic for a seed, so a failure found in CI is reproduced by running the same test.
Mutations cover what finding #3 listed: wrong types in nested fields (message as a list,
string, number or null; from.id as a string; text as an object), missing parts (no chat),
huge integers, unicode junk and lone surrogates, nesting up to ~1000 levels, NaN and
Infinity, duplicate keys, truncated JSON, an empty body, bytes that are no UTF-8, and
content types other than JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

JSON = Any
# Stands for a deeply nested value, spliced into the serialised text: json.dumps itself
# would recurse once per level.
DEEP_MARK = "\x00deep\x00"


@dataclass(frozen=True)
class Case:
    """One request: what it is (for failure messages), its body and its content type."""

    label: str
    body: bytes
    content_type: str | None = "application/json"


JUNK_TEXT = [
    "",
    " ",
    "\u0000\u0001\u001f",
    "\u202e\u200b\ufeff\u2028",
    "𝕳ả𝖎 Đăng 🐟🌊" * 3,
    "\ud800",  # a lone surrogate: valid JSON ("\\ud800"), not encodable as UTF-8
    "\udfff\ud83d",
    "'; DROP TABLE subscribers; --",
    "/start " + "c" * 300,
    "%s %d {0} {name}",
    "x" * 5000,
]
HUGE_INTS = [10**30, -(10**30), 2**63, -(2**63) - 1, 2**64, 10**400]
VALID_TEXTS = ["/start c11914", "/trogiup", "/huy", "1", "2", "Sóng lớn quá", "/xoa", "hello"]


def junk_value(rng: random.Random) -> JSON:
    """A value of the wrong type (or an absurd one of the right type) for any field."""
    kind = rng.randrange(14)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([[], [1, "a", None], [{"id": 1}]])
    if kind == 2:
        return rng.choice(JUNK_TEXT)
    if kind == 3:
        return rng.choice([0, -1, 1, 7, 42])
    if kind == 4:
        return rng.choice(HUGE_INTS)
    if kind == 5:
        return rng.choice([1.5, -0.0, 1e308, 5e-324])
    if kind == 6:
        return rng.choice([True, False])
    if kind == 7:
        return rng.choice([{}, {"id": "x"}, {"text": {"text": "hi"}}])
    if kind == 8:
        return DEEP_MARK
    if kind == 9:
        return str(rng.randrange(10**6))  # a number as a string (from.id "123")
    if kind == 10:
        return {"": None, "\u0000": []}
    if kind == 11:
        return [rng.choice(JUNK_TEXT) for _ in range(rng.randrange(1, 4))]
    if kind == 12:
        return rng.randrange(-(2**31), 2**31)
    return rng.choice(VALID_TEXTS)


def deep_value(rng: random.Random) -> str:
    depth = rng.choice([10, 100, 500, 900, 1000, 1000])
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


def _paths(tree: JSON, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _paths(value, (*prefix, index))


def _parent(tree: JSON, path: tuple[Any, ...]) -> JSON:
    for step in path[:-1]:
        tree = tree[step]
    return tree


def mutate(tree: JSON, rng: random.Random) -> list[str]:
    """Change the tree in place at random paths; what was done, for the label."""
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = [p for p in _paths(tree) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = _parent(tree, path)
        name = ".".join(str(p) for p in path)
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
            done.append(f"-{name}")
        elif action == 1 and isinstance(parent[path[-1]], dict):
            parent[path[-1]][rng.choice(["extra", "id", "text", "\u0000"])] = junk_value(rng)
            done.append(f"+{name}.*")
        else:
            parent[path[-1]] = junk_value(rng)
            done.append(f"{name}=junk")
    return done


def serialise(tree: JSON, rng: random.Random) -> bytes:
    text = json.dumps(tree, ensure_ascii=rng.random() < 0.5)
    while json.dumps(DEEP_MARK) in text:
        text = text.replace(json.dumps(DEEP_MARK), deep_value(rng), 1)
    # A lone surrogate written unescaped is no UTF-8: the bytes a broken sender would send.
    return text.encode("utf-8", "surrogatepass")


def corrupt(body: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Damage the serialised body itself (what no parsed tree can express)."""
    kind = rng.randrange(10)
    if kind == 0:
        return "truncated", body[: rng.randrange(max(1, len(body)))]
    if kind == 1:
        constant = rng.choice([b"NaN", b"Infinity", b"-Infinity"])
        return "constant", body[:-1] + b', "n": ' + constant + b"}"
    if kind == 2:  # the last duplicate wins in Python's parser: a second, wrong message
        return "duplicate key", body[:-1] + b', "message": ' + rng.choice(
            [b"5", b"[]", b'"x"']
        ) + b"}"
    if kind == 3:
        at = rng.randrange(len(body) + 1)
        return "bad UTF-8", body[:at] + rng.choice(
            [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"]
        ) + body[at:]
    if kind == 4:
        return "BOM", b"\xef\xbb\xbf" + body
    if kind == 5:
        return "trailing garbage", body + rng.choice([b"}", b",", b" x", b"\x00"])
    if kind == 6:
        return "two objects", body + b"\n" + body
    if kind == 7:
        return "whitespace", b" \t\r\n" * rng.randrange(1, 50) + body
    if kind == 8:
        return "single quotes", body.replace(b'"', b"'")
    return "comment", b"/* x */" + body


TOP_LEVEL_JUNK = [b"", b"null", b"true", b"0", b"-1e999", b'"update"', b"[]", b"[{}]", b"{}", b"{"]
CONTENT_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/octet-stream",
]


def cases(seed: int, count: int, template: Callable[[random.Random, int], JSON]) -> list[Case]:
    """`count` requests: about 1 in 5 a well-formed update, the rest mutated, damaged or
    too large."""
    rng = random.Random(seed)
    made = []
    for n in range(count):
        tree = template(rng, n)
        roll = rng.random()
        if roll < 0.2:
            label, body = "valid", serialise(tree, rng)
        elif roll < 0.75:
            label = "mutated " + " ".join(mutate(tree, rng))
            body = serialise(tree, rng)
        elif roll < 0.95:
            what, body = corrupt(serialise(tree, rng), rng)
            label = f"corrupted: {what}"
        elif roll < 0.96:
            # Over the 1 MB limit: refused with 413 before the rest is read, which must
            # still leave the client an answer (not a reset) and the server serving.
            padding = b"x" * rng.randrange(1024 * 1024, 2 * 1024 * 1024)
            label, body = "too large", b'{"update_id": 1, "pad": "' + padding + b'"}'
        else:
            label, body = "top-level junk", rng.choice(TOP_LEVEL_JUNK)
        content_type: str | None = "application/json"
        if rng.random() < 0.05:
            content_type = rng.choice(CONTENT_TYPES)
        made.append(Case(f"#{n} {label}", body, content_type))
    return made


# --------------------------------------------------------------------- templates


# A few hundred chats: each gets several updates (floods, dialogs in progress).
CHAT_IDS = range(800_000, 800_300)


def _chat_id(rng: random.Random) -> int:
    return rng.choice(CHAT_IDS)


def telegram_update(rng: random.Random, n: int) -> JSON:
    """A Telegram update as the Bot API sends it: a message of some kind, or a button press."""
    chat_id = _chat_id(rng)
    user = {"id": chat_id, "is_bot": False, "first_name": "Ngư dân", "language_code": "vi"}
    chat = {"id": chat_id, "type": rng.choice(["private"] * 8 + ["group", "supergroup"])}
    message: dict[str, JSON] = {
        "message_id": n + 1,
        "from": user,
        "chat": chat,
        "date": 1_760_000_000 + n,
    }
    kind = rng.randrange(6)
    if kind <= 1:
        message["text"] = rng.choice(VALID_TEXTS)
        if message["text"].startswith("/"):
            length = len(message["text"].split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    elif kind == 2:
        size = {"file_id": f"p{n}", "file_unique_id": f"u{n}", "width": 90, "height": 90}
        message["photo"] = [size]
        message["caption"] = "Phao trôi"
    elif kind == 3:
        message["location"] = {"latitude": 20.95, "longitude": 107.08}
    elif kind == 4:
        message["sticker"] = {
            "file_id": f"s{n}", "file_unique_id": f"su{n}", "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False,
        }  # fmt: skip
    else:
        return {
            "update_id": 10_000 + n,
            "callback_query": {
                "id": f"q{n}",
                "from": user,
                "chat_instance": "ci",
                "data": rng.choice(["menu", "ack:1", "area:c11914", "x" * 64]),
                "message": {**message, "text": "Chọn:", "from": {**user, "is_bot": True}},
            },
        }
    return {"update_id": 10_000 + n, "message": message}


def zalo_update(rng: random.Random, n: int) -> JSON:
    """A Zalo update as the Bot API posts it (sometimes wrapped like an API answer)."""
    chat_id = f"zf-{_chat_id(rng)}"
    events = {
        "text": "message.text.received",
        "photo": "message.image.received",
        "sticker": "message.sticker.received",
        "other": "message.unsupported.received",
    }
    kind = rng.choice(["text", "text", "text", "photo", "sticker", "other"])
    message: dict[str, JSON] = {
        "from": {"id": chat_id, "display_name": "Nguyen Van A", "is_bot": False},
        "chat": {"id": chat_id, "chat_type": rng.choice(["PRIVATE"] * 8 + ["GROUP"])},
        "message_id": f"{n:08x}" * 4,
        "date": 1_760_000_000_000 + n,
    }
    if kind == "text":
        message["text"] = rng.choice(VALID_TEXTS)
    elif kind == "photo":
        message["photo_url"] = message["photo"] = "https://photo-stal.zadn.vn/fake/a.jpg"
    elif kind == "sticker":
        message["sticker"] = "0e078a2fb66a5f34067b"
    update = {"event_name": events[kind], "message": message}
    if rng.random() < 0.2:
        return {"ok": True, "result": update}
    return update
