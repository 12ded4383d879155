"""The S3 store against a real S3-protocol server (moto's), and the store contract that the
local and S3 stores both keep."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from audio.s3store import ObjectChangedError, S3Error, S3Store
from audio.store import (
    AssetStore,
    LocalCopyStore,
    LocalStore,
    available_stores,
    make_store,
)
from haidang.settings import Settings
from haidang.stores import audio_store, document_store, local_copies
from tests.audio.test_store import refused_everywhere
from tests.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server

KEY = "bulletins/ab/abcdef0123.mp3"


def _source(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read(store: AssetStore, key: str) -> bytes:
    with store.open(key) as fh:
        return fh.read()


@pytest.fixture
def s3(s3_server: S3Server, s3_bucket: str) -> S3Store:
    return S3Store(**s3_server.options(s3_bucket, prefix="audio/"))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> AssetStore:
    """Each contract test runs on both stores (the S3 one skips if no server can start)."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    s3: S3Store = request.getfixturevalue("s3")
    return s3


class Gets:
    """Counts the GET requests a store's boto3 client sends (botocore's own event hook)."""

    def __init__(self, store: S3Store) -> None:
        self.count = 0
        store.client.meta.events.register("before-send.s3.GetObject", self._seen)

    def _seen(self, **_: Any) -> None:
        self.count += 1


# --------------------------------------------------------------------------- the contract


def test_put_open_size_exists_and_delete(store: AssetStore, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    assert not store.exists(KEY)
    store.put_file(KEY, _source(tmp_path, data))
    assert store.exists(KEY)
    assert store.size(KEY) == len(data)
    with store.open(KEY) as fh:
        assert fh.seekable() and fh.readable()
        assert fh.read() == data
        fh.seek(100)  # downloads with a Range header seek
        assert fh.read(5) == data[100:105]
        assert fh.seek(0, io.SEEK_END) == len(data)
        assert fh.read(10) == b""
        fh.seek(-7, io.SEEK_END)
        assert fh.read() == data[-7:]
    store.delete(KEY)
    assert not store.exists(KEY)
    store.delete(KEY)  # missing: not an error


def test_missing_keys_raise_file_not_found(store: AssetStore) -> None:
    for call in (lambda: store.open("nothing/here.mp3"), lambda: store.size("nothing/here.mp3")):
        with pytest.raises(FileNotFoundError):
            call()
    assert not store.exists("nothing/here.mp3")


def test_put_replaces(store: AssetStore, tmp_path: Path) -> None:
    store.put_file(KEY, _source(tmp_path, b"first"))
    store.put_file(KEY, _source(tmp_path, b"second version"))
    assert _read(store, KEY) == b"second version"
    assert store.size(KEY) == len(b"second version")


def test_a_missing_source_is_an_error_and_writes_nothing(store: AssetStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(KEY, tmp_path / "nope.mp3")
    assert not store.exists(KEY)


@pytest.mark.parametrize(
    "key", ["", "../outside.mp3", "/etc/passwd", "a//b.mp3", "a/b/", ".hidden", "á.mp3", "x" * 256]
)
def test_invalid_keys_are_refused(store: AssetStore, tmp_path: Path, key: str) -> None:
    refused_everywhere(store, key, _source(tmp_path, b"data"))


def test_a_large_object_round_trips(store: AssetStore, tmp_path: Path) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)  # a long programme's MP3
    store.put_file(KEY, _source(tmp_path, data))
    assert store.size(KEY) == len(data)
    with store.open(KEY) as fh:
        pieces = []
        while chunk := fh.read(64 * 1024):  # as the web app streams it
            pieces.append(chunk)
        assert b"".join(pieces) == data
        fh.seek(5_000_000)
        assert fh.read(100) == data[5_000_000:5_000_100]
        fh.seek(10)
        assert fh.read(10) == data[10:20]
    assert _read(store, KEY) == data


def test_concurrent_puts_of_one_key_leave_one_whole_object(
    store: AssetStore, tmp_path: Path
) -> None:
    payloads = [bytes([i]) * 300_000 for i in range(8)]
    sources = [_source(tmp_path, data, f"s{i}") for i, data in enumerate(payloads)]
    with ThreadPoolExecutor(len(sources)) as pool:
        for done in [pool.submit(store.put_file, KEY, source) for source in sources]:
            done.result()  # every put succeeds
    assert _read(store, KEY) in payloads
    assert store.size(KEY) == 300_000


# --------------------------------------------------------------------------- S3 only


def test_s3_objects_sit_under_the_prefix_and_have_no_local_path(
    s3: S3Store, s3_server: S3Server, tmp_path: Path
) -> None:
    s3.put_file(KEY, _source(tmp_path, b"ID3 mp3 bytes"))
    assert s3.path_for(KEY) is None
    listed = s3_server.client.list_objects_v2(Bucket=s3.bucket)
    assert [item["Key"] for item in listed.get("Contents", [])] == ["audio/" + KEY]
    head = s3_server.client.head_object(Bucket=s3.bucket, Key="audio/" + KEY)
    assert head["ContentType"] == "audio/mpeg"


def test_s3_reads_with_one_get_per_run_of_reads(s3: S3Store, tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    s3.put_file(KEY, _source(tmp_path, data))
    gets = Gets(s3)
    with s3.open(KEY) as fh:  # a HEAD: the size needs no GET
        assert fh.seek(0, io.SEEK_END) == len(data)
    assert gets.count == 0
    with s3.open(KEY) as fh:
        assert fh.read() == data
    assert gets.count == 1
    with s3.open(KEY) as fh:  # a Range request: one GET from its first byte
        fh.seek(2_000_000)
        assert fh.read(100) == data[2_000_000:2_000_100]
        assert fh.read(50) == data[2_000_100:2_000_150]
    assert gets.count == 2


def test_s3_reader_never_mixes_two_versions(s3: S3Store, tmp_path: Path) -> None:
    s3.put_file(KEY, _source(tmp_path, b"a" * 1000, "a"))
    with s3.open(KEY) as fh:
        s3.put_file(KEY, _source(tmp_path, b"b" * 1000, "b"))
        with pytest.raises(ObjectChangedError):
            fh.read()
    assert _read(s3, KEY) == b"b" * 1000


def test_s3_errors_are_oserrors_and_never_show_credentials(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store = S3Store(**s3_server.options("haidang-no-such-bucket"))
    assert SECRET_ACCESS_KEY not in repr(store) and ACCESS_KEY_ID not in repr(store)
    with pytest.raises(S3Error) as failure:
        store.put_file(KEY, _source(tmp_path, b"data"))
    assert isinstance(failure.value, OSError)
    assert "haidang-no-such-bucket" in str(failure.value) and "PUT" in str(failure.value)
    assert SECRET_ACCESS_KEY not in str(failure.value)
    assert ACCESS_KEY_ID not in str(failure.value)
    with pytest.raises(ValueError, match="both"):
        S3Store(bucket="haidang-x", access_key_id="only-the-id")
    with pytest.raises(ValueError, match="prefix"):
        S3Store(bucket="haidang-x", prefix="audio")


def test_local_copies_give_telegram_a_file(
    s3: S3Store, s3_server: S3Server, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    copies = LocalCopyStore(s3, cache)
    assert isinstance(copies, AssetStore)
    data = os.urandom(100_000)
    s3.put_file(KEY, _source(tmp_path, data))
    gets = Gets(s3)
    path = copies.path_for(KEY)
    assert path == (cache / KEY).resolve() and path.read_bytes() == data
    assert copies.path_for(KEY) == path and gets.count == 1  # downloaded once
    rendered = "documents/cd/cdef.ogg"
    copies.put_file(rendered, _source(tmp_path, b"OggS voice", "voice.ogg"))
    assert copies.path_for(rendered) == (cache / rendered).resolve()
    assert gets.count == 1  # what this process put is never downloaded back
    assert _read(s3, rendered) == b"OggS voice"
    copies.delete(rendered)
    assert not s3.exists(rendered) and not (cache / rendered).exists()
    assert copies.path_for("nothing/here.ogg") is None
    local = LocalStore(tmp_path / "local")
    assert LocalCopyStore(local, cache).path_for(KEY) == local.path_for(KEY)


# --------------------------------------------------------------------------- settings


def test_registry_and_settings_build_s3_stores(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    assert available_stores() == ["local", "s3"]
    assert isinstance(make_store("s3", **s3_server.options(s3_bucket)), S3Store)
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "var",
        asset_store="s3",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=s3_bucket,
        s3_access_key_id=SecretStr(ACCESS_KEY_ID),
        s3_secret_access_key=SecretStr(SECRET_ACCESS_KEY),
    )
    assert SECRET_ACCESS_KEY not in repr(settings) and ACCESS_KEY_ID not in repr(settings)
    audio, documents = audio_store(settings), document_store(settings)
    assert isinstance(audio, S3Store) and isinstance(documents, S3Store)
    assert (audio.prefix, documents.prefix) == ("audio/", "documents/")
    audio.put_file("x.mp3", _source(tmp_path, b"audio"))
    assert not documents.exists("x.mp3")
    assert isinstance(local_copies(audio, settings), LocalCopyStore)
    assert not (tmp_path / "var").exists()  # nothing written locally

    local = Settings(_env_file=None, data_dir=tmp_path / "here")
    on_disk = audio_store(local)
    assert isinstance(on_disk, LocalStore) and local_copies(on_disk, local) is on_disk


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"asset_store": "s3"}, "ASSET_STORE=s3 needs S3_BUCKET"),
        ({"s3_bucket": "Not_A_Bucket"}, "S3_BUCKET"),
        ({"s3_endpoint_url": "http://key:secret@127.0.0.1:9000"}, "must not carry credentials"),
        ({"s3_access_key_id": "AKIA123"}, "both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"),
    ],
)
def test_wrong_s3_settings_are_named(
    values: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from haidang.settings import SettingsError, load_settings

    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("ASSET_STORE", "S3_BUCKET", "S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError, match=message) as failure:
        load_settings(**values)
    assert "secret@" not in str(failure.value)


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A developer's AWS_* variables or profile must not leak into these tests.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    yield
