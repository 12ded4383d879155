"""An AssetStore on S3-compatible object storage (AWS S3, MinIO, Ceph, R2 …) through boto3."""

from __future__ import annotations

import base64
import hashlib
import io
import mimetypes
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from audio.store import check_key

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client  # boto3-stubs, a dev dependency: types only

__all__ = ["ObjectChangedError", "S3Error", "S3Store"]

_HASH_CHUNK: Final = 1 << 20
# What a reader asks the buffered layer for: enough to keep a streamed download to a few
# dozen reads a megabyte, small enough that a 100-byte Range costs little more than that.
READ_BUFFER: Final = 256 * 1024
_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})


class S3Error(OSError):
    """A request to the object store failed (unreachable, refused, no such bucket …).

    An OSError, like a full disk for the local store, so callers that report storage
    failures handle both. The message names the operation, bucket and key, never a
    credential.
    """


class ObjectChangedError(S3Error):
    """The object was replaced or deleted while a reader still had bytes to read."""


class _EndedEarly(Exception):
    """A body that ended before the bytes its range promised."""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _missing(error: ClientError) -> bool:
    return _code(error) in _MISSING or _status(error) == 404


class S3Store:
    """An AssetStore on one bucket of an S3-compatible server, under an optional key prefix.

    Each key is stored as the object ``prefix + key`` (the audio store uses "audio/", the
    documents store "documents/", as DATA_DIR/audio and DATA_DIR/documents locally).
    ``put_file`` is one PUT with Content-MD5: S3 makes an object visible whole or not at
    all and refuses a body that does not match, so readers never see a partial object and
    concurrent puts of a key leave one of them (up to 5 GB, a single PUT's limit).
    ``open`` reads by ranged GETs (see :class:`_ObjectReader`); ``path_for`` is None.

    Credentials are handed to boto3 and not kept here: neither ``repr`` nor an error
    message shows them. Without ``access_key_id``/``secret_access_key`` boto3's usual
    chain applies (AWS_* variables, ~/.aws, an instance role). The bucket must exist:
    the store never creates it. The credentials need s3:GetObject, s3:PutObject,
    s3:DeleteObject and s3:ListBucket (without the last, S3 answers 403 instead of 404
    for a missing key, and a missing object reads as an error).
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_connections: int = 32,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 store needs a bucket")
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"an S3 key prefix ends with '/' (e.g. 'audio/'), not {prefix!r}")
        if prefix:
            check_key(prefix[:-1])  # InvalidKeyError, a ValueError, for anything odd
        if (access_key_id is None) != (secret_access_key is None):
            raise ValueError("give both the access key id and the secret access key, or neither")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        config = Config(
            # Path-style URLs (endpoint/bucket/key) on a server of our own (MinIO, Ceph, a
            # test server): virtual-hosted style needs a DNS name per bucket there.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # boto3 1.36+ adds CRC checksums by default that several S3-compatible servers
            # refuse; Content-MD5 (which every one checks) guards the uploads instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=30,
            # Each download being streamed holds one connection (the web app streams from
            # worker threads); beyond this urllib3 opens and discards extra ones.
            max_pool_connections=max_connections,
        )
        self.client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=config,
        )

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r}{where})"

    def _object(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _error(self, operation: str, key: str, exc: Exception) -> S3Error:
        if isinstance(exc, ClientError):
            message = exc.response.get("Error", {}).get("Message", "")
            detail = f"{_code(exc) or _status(exc)}: {message}"
        else:
            detail = str(exc)
        return S3Error(f"S3 {operation} s3://{self.bucket}/{self.prefix}{key} failed ({detail})")

    def _head(self, key: str) -> tuple[int, str]:
        """(size, ETag) of the object; FileNotFoundError when there is none."""
        name = self._object(key)
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(f"no object {key!r} in the store") from None
            raise self._error("HEAD", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("HEAD", key, exc) from None
        return int(answer["ContentLength"]), str(answer["ETag"])

    def put_file(self, key: str, source_path: Path) -> None:
        """Upload ``source_path`` as the object (one PUT, checked by Content-MD5)."""
        name = self._object(key)
        with open(source_path, "rb") as body:
            digest = hashlib.md5(usedforsecurity=False)
            while chunk := body.read(_HASH_CHUNK):
                digest.update(chunk)
            body.seek(0)
            media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=name,
                    Body=body,
                    ContentMD5=base64.b64encode(digest.digest()).decode("ascii"),
                    ContentType=media_type,
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._error("PUT", key, exc) from None

    def open(self, key: str) -> BinaryIO:
        """A seekable reader of the object as it is now (a HEAD; bytes come on first read).

        A replacement or deletion of the object while bytes remain to be read makes a
        later read raise ObjectChangedError rather than mix two versions.
        """
        size, etag = self._head(key)
        raw = _ObjectReader(self, key, size, etag)
        return io.BufferedReader(raw, buffer_size=READ_BUFFER)

    def path_for(self, key: str) -> Path | None:
        check_key(key)
        return None

    def size(self, key: str) -> int:
        return self._head(key)[0]

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        name = self._object(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if not _missing(exc):  # S3 answers 204 for a missing key; some servers 404
                raise self._error("DELETE", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("DELETE", key, exc) from None


class _ObjectReader(io.RawIOBase):
    """One version of an object (its ETag, as HEAD saw it) read by ranged GETs.

    Why not download the object into a temporary file on ``open``: a Range request for
    100 bytes of a 5 MB programme (a player seeking) would fetch all 5 MB, and a HEAD or
    a 304 would fetch it for nothing. Here a read starts one GET from the position to the
    end and keeps reading its body while reads go on in order, so a whole download is a
    single GET and a Range request fetches from its start; a seek elsewhere closes that
    body (its connection is dropped, not reused) and the next read starts another GET.
    Every GET carries If-Match with the ETag, so a reader never mixes two versions. A
    connection lost mid-body is resumed once at the same position.
    """

    def __init__(self, store: S3Store, key: str, size: int, etag: str) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self.name = key
        self._size = size
        self._etag = etag
        self._pos = 0
        self._body: StreamingBody | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        if position != self._pos:
            self._drop()
            self._pos = position
        return position

    def _get(self) -> StreamingBody:
        store = self._store
        try:
            answer = store.client.get_object(
                Bucket=store.bucket,
                Key=store._object(self._key),
                Range=f"bytes={self._pos}-{self._size - 1}",
                IfMatch=self._etag,
            )
        except ClientError as exc:
            if _missing(exc) or _status(exc) == 412:
                raise ObjectChangedError(
                    f"s3://{store.bucket}/{store.prefix}{self._key} changed while being read"
                ) from None
            raise store._error("GET", self._key, exc) from None
        except BotoCoreError as exc:
            raise store._error("GET", self._key, exc) from None
        body = answer["Body"]
        if self._pos and not str(answer.get("ContentRange", "")).startswith(f"bytes {self._pos}-"):
            body.close()  # a server that ignored Range: its bytes start elsewhere
            raise store._error("GET", self._key, ValueError("the server ignored the Range"))
        return body

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._pos)
        if wanted <= 0:
            return 0
        for attempt in (1, 2):
            if self._body is None:
                self._body = self._get()
            try:
                chunk = self._body.read(wanted)
                if not chunk:
                    raise _EndedEarly("the object's body ended early")
            except (BotoCoreError, _EndedEarly) as exc:
                self._drop()
                if attempt == 2:
                    raise self._store._error("GET", self._key, exc) from None
                time.sleep(0.2)
                continue
            got = len(chunk)
            view[:got] = chunk
            self._pos += got
            return got
        raise AssertionError("unreachable")  # pragma: no cover

    def readall(self) -> bytes:
        # RawIOBase's readall reads 8 KB at a time; the rest of the object in large reads.
        out = bytearray()
        chunk = bytearray(_HASH_CHUNK)
        while got := self.readinto(chunk):
            out += chunk[:got]
        return bytes(out)

    def _drop(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def close(self) -> None:
        self._drop()
        super().close()
