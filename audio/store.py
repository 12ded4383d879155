"""Where rendered audio, photos and documents live: the AssetStore protocol, a local
directory store, local copies for stores without local files, and a registry."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol, runtime_checkable

__all__ = [
    "AssetStore",
    "InvalidKeyError",
    "LocalCopyStore",
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
    """Blob storage for rendered audio, photos and documents, addressed by relative POSIX keys.

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


class LocalCopyStore:
    """An AssetStore over ``store`` whose ``path_for`` always names a local file, for code
    that must hand a file path on (a Telegram upload reads ``Media.path``).

    For a store with local files (LocalStore) that is the store's own path. Otherwise the
    object is copied once into ``cache_dir`` and the copy's path returned; a ``put_file``
    through this wrapper copies the source in as well, so what this process renders is
    never downloaded back. Copies are kept by key: our keys are content-addressed (a
    forced re-render rewrites a key with a render of the same content), and a put or
    delete through this wrapper replaces or drops the copy. Copies not used for
    ``max_age`` seconds are removed (looked for at most once an hour).

    ``path_for`` may download (blocking); it returns None when the object does not exist
    and raises OSError when the store cannot be read.
    """

    PRUNE_EVERY_S: Final = 3600.0

    def __init__(self, store: AssetStore, cache_dir: Path | str, *, max_age: float = 7 * 86400):
        self.store = store
        self.cache = LocalStore(cache_dir)
        self.max_age = max_age
        self._pruned_at = time.monotonic()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalCopyStore({self.store!r}, {str(self.cache.root)!r})"

    def put_file(self, key: str, source_path: Path) -> None:
        self.store.put_file(key, source_path)
        if self.store.path_for(key) is None:
            self._copy_in(key, source_path)

    def open(self, key: str) -> BinaryIO:
        return self.store.open(key)

    def path_for(self, key: str) -> Path | None:
        own = self.store.path_for(key)
        if own is not None:
            return own
        copy = self.cache._path(key)
        try:
            os.utime(copy)  # in use: not pruned
            return copy
        except FileNotFoundError:
            pass
        try:
            with self.store.open(key) as source:
                self._copy_in(key, source)
        except FileNotFoundError:
            return None
        self._prune()
        return copy

    def size(self, key: str) -> int:
        return self.store.size(key)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def delete(self, key: str) -> None:
        self.store.delete(key)
        self.cache.delete(key)

    def _copy_in(self, key: str, source: Path | BinaryIO) -> None:
        # A copy can be made again, so no fsync: temp file and rename, for whole files only.
        target = self.cache._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, Path):
                    with source.open("rb") as data:
                        shutil.copyfileobj(data, out, _COPY_CHUNK)
                else:
                    shutil.copyfileobj(source, out, _COPY_CHUNK)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _prune(self) -> None:
        with self._lock:
            if time.monotonic() - self._pruned_at < self.PRUNE_EVERY_S:
                return
            self._pruned_at = time.monotonic()
        oldest = time.time() - self.max_age
        for path in self.cache.root.rglob("*"):
            try:
                if path.is_file() and path.stat().st_mtime < oldest:
                    path.unlink()
            except OSError:
                pass  # gone meanwhile, or not ours to remove: the next pass tries again


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


def _s3_store(**options: Any) -> AssetStore:
    # Imported on first use: boto3 takes a while to import, and the local default needs none.
    from audio.s3store import S3Store

    return S3Store(**options)


_factories: dict[str, StoreFactory] = {"local": LocalStore, "s3": _s3_store}
_factories_lock = threading.Lock()


def register_store(kind: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available as ``make_store(kind, ...)`` (e.g. another object store).

    Raises ValueError if ``kind`` is taken, unless ``replace`` is true.
    """
    with _factories_lock:
        if kind in _factories and not replace:
            raise ValueError(f"asset store {kind!r} is already registered")
        _factories[kind] = factory


def make_store(kind: str, **options: Any) -> AssetStore:
    """Build the store registered as ``kind`` with keyword ``options``: "local" takes
    ``root=``, "s3" takes audio.s3store.S3Store's (``bucket=``, ``prefix=``, ``endpoint_url=`` …).

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
