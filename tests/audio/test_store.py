"""The asset store: keys, atomic puts, reads, deletes and the store registry."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from audio import store as store_module
from audio.store import AssetStore, InvalidKeyError, LocalStore, make_store, register_store

KEY = "bulletins/ab/abcdef0123.mp3"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "audio")


def _source(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _visible_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_open_size_exists_path_and_delete(store: LocalStore, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    assert not store.exists(KEY)
    store.put_file(KEY, _source(tmp_path, data))
    assert store.exists(KEY)
    assert store.size(KEY) == len(data)
    with store.open(KEY) as fh:
        assert fh.read() == data
        fh.seek(100)  # downloads with a Range header seek
        assert fh.read(5) == data[100:105]
    path = store.path_for(KEY)
    assert path == store.root / "bulletins" / "ab" / "abcdef0123.mp3"
    assert path is not None and path.read_bytes() == data
    assert _visible_files(store.root) == [KEY]
    store.delete(KEY)
    assert not store.exists(KEY)
    store.delete(KEY)  # missing: not an error
    with pytest.raises(FileNotFoundError):
        store.open(KEY)
    with pytest.raises(FileNotFoundError):
        store.size(KEY)


def test_put_replaces_and_leaves_no_temporary_files(store: LocalStore, tmp_path: Path) -> None:
    store.put_file(KEY, _source(tmp_path, b"first"))
    store.put_file(KEY, _source(tmp_path, b"second version"))
    with store.open(KEY) as fh:
        assert fh.read() == b"second version"
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == ["abcdef0123.mp3"]


def test_a_failed_put_keeps_the_old_object_and_no_temp_file(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_file(KEY, _source(tmp_path, b"previous"))

    def broken_copy(source: object, out: object, length: int = 0) -> None:
        out.write(b"half")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfileobj", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        store.put_file(KEY, _source(tmp_path, b"new content"))
    with store.open(KEY) as fh:
        assert fh.read() == b"previous"
    assert [p.name for p in store.root.rglob("*") if p.is_file()] == ["abcdef0123.mp3"]


def test_a_missing_source_is_an_error_and_writes_nothing(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(KEY, tmp_path / "nope.mp3")
    assert not store.exists(KEY)
    assert _visible_files(store.root) == []


def test_concurrent_puts_of_one_key_leave_one_complete_copy(
    store: LocalStore, tmp_path: Path
) -> None:
    payloads = [bytes([i]) * 300_000 for i in range(8)]
    sources = [_source(tmp_path, data, f"s{i}") for i, data in enumerate(payloads)]
    threads = [threading.Thread(target=store.put_file, args=(KEY, s)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.open(KEY) as fh:
        assert fh.read() in payloads
    assert _visible_files(store.root) == [KEY]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../outside.mp3",
        "bulletins/../../outside.mp3",
        "/etc/passwd",
        "bulletins//x.mp3",
        "bulletins/x.mp3/",
        ".hidden.mp3",
        "bulletins/.x.mp3.tmp",
        "a\\b.mp3",
        "bulletins/x y.mp3",
        "bulletins/x\x00.mp3",
        "á.mp3",
        "x" * 256,
    ],
)
def test_keys_that_could_escape_or_clash_are_refused(
    store: LocalStore, tmp_path: Path, key: str
) -> None:
    refused_everywhere(store, key, _source(tmp_path, b"data"))
    assert not (tmp_path / "outside.mp3").exists()


def refused_everywhere(store: AssetStore, key: str, source: Path) -> None:
    """Every method of the store refuses `key` with InvalidKeyError (shared with the S3
    store's contract tests)."""
    for call in (
        lambda: store.put_file(key, source),
        lambda: store.open(key),
        lambda: store.exists(key),
        lambda: store.size(key),
        lambda: store.delete(key),
        lambda: store.path_for(key),
    ):
        with pytest.raises(InvalidKeyError):
            call()


def test_a_symlink_out_of_the_root_is_refused(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKeyError, match="escapes"):
        store.put_file("link/x.mp3", _source(tmp_path, b"data"))
    assert list(outside.iterdir()) == []


def test_registry_builds_local_and_takes_new_kinds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = make_store("local", root=tmp_path / "a")
    assert isinstance(local, LocalStore) and isinstance(local, AssetStore)
    assert local.root == (tmp_path / "a").resolve()
    with pytest.raises(LookupError, match="unknown asset store 'ftp'"):
        make_store("ftp", host="x")
    assert "s3" in store_module.available_stores()  # audio.s3store, imported on first use
    with pytest.raises(ValueError, match="already registered"):
        register_store("local", LocalStore)

    monkeypatch.setattr(store_module, "_factories", dict(store_module._factories))
    register_store("mirror", lambda root: LocalStore(Path(root) / "mirror"))
    assert "mirror" in store_module.available_stores()
    mirror = make_store("mirror", root=tmp_path)
    assert mirror.path_for("x.mp3") == (tmp_path / "mirror" / "x.mp3").resolve()
