"""Where rendered audio lives: the AssetStore protocol, a local directory store, a registry."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, runtime_checkable

__all__ = [
    "AssetStore",
    "InvalidKeyError",
    "LocalStore",
    "StoreFactory",
    "available_stores",
    "check_key",
    "make_store",
    "register_store",
]

MAX_KEY_LENGTH: Final = 255  # AudioAsset.store_key's column width
# Each path segment: letters, digits, '.', '_', '-'; never starting with '.' so keys can
# neither climb out of the root ('..') nor collide with the store's own '.tmp' files.
_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
_COPY_CHUNK: Final = 1 << 20


class InvalidKeyError(ValueError):
    """A key that is not a plain relative POSIX path inside the store."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid store key, else raise InvalidKeyError.

    Valid: 1-255 characters, '/'-separated segments of [A-Za-z0-9._-] that do not start
    with '.', no leading or trailing '/' and no empty segments.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"store keys are 1-{MAX_KEY_LENGTH} characters")
    if not all(_SEGMENT.match(segment) for segment in key.split("/")):
        raise InvalidKeyError(f"invalid store key {key!r}")
    return key


@runtime_checkable
class AssetStore(Protocol):
    """Blob storage for rendered audio, addressed by relative POSIX keys.

    Methods block (disk or network): call them from a worker thread in async code
    when the object may be large. ``open``/``size`` raise FileNotFoundError for a
    missing key and every method raises InvalidKeyError for a malformed one.
    """

    def put_file(self, key: str, source_path: Path) -> None:
        """Store a copy of ``source_path`` under ``key``: all of it or nothing, replacing."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary file object to read the object from (seekable); the caller closes it."""
        ...

    def path_for(self, key: str) -> Path | None:
        """The object's local file path, or None when the store is not a local directory."""
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...


class LocalStore:
    """An AssetStore on a local directory; writes are atomic (temp file, fsync, rename).

    Readers never see a partial file: a put lands under a hidden temporary name in the
    target directory and is renamed over the key, so concurrent puts of the same key
    leave one complete copy. Empty directories are left behind by ``delete``.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        # check_key already rules out '..'; this also refuses a symlink planted in the tree.
        if not path.is_relative_to(self.root):
            raise InvalidKeyError(f"store key {key!r} escapes the store")
        return path

    def put_file(self, key: str, source_path: Path) -> None:
        """Copy ``source_path`` in atomically (see the class docstring)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(source_path, "rb") as source:
                shutil.copyfileobj(source, out, _COPY_CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        fsync_directory(target.parent)

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def path_for(self, key: str) -> Path | None:
        return self._path(key)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    # Makes the rename durable; some platforms cannot open a directory, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


StoreFactory = Callable[..., AssetStore]

_factories: dict[str, StoreFactory] = {"local": LocalStore}
_factories_lock = threading.Lock()


def register_store(kind: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available as ``make_store(kind, ...)`` (e.g. an S3 store later).

    Raises ValueError if ``kind`` is taken, unless ``replace`` is true.
    """
    with _factories_lock:
        if kind in _factories and not replace:
            raise ValueError(f"asset store {kind!r} is already registered")
        _factories[kind] = factory


def make_store(kind: str, **options: Any) -> AssetStore:
    """Build the store registered as ``kind`` ("local": ``root=``) with keyword ``options``.

    Raises LookupError for an unknown kind; the factory's own errors pass through.
    """
    with _factories_lock:
        factory = _factories.get(kind)
    if factory is None:
        raise LookupError(f"unknown asset store {kind!r}; available: {available_stores()}")
    return factory(**options)


def available_stores() -> list[str]:
    """Names of the registered store kinds, sorted."""
    with _factories_lock:
        return sorted(_factories)
