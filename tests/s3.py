"""A real S3-protocol server for the tests: moto's standalone server on 127.0.0.1 over HTTP."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY_ID = "test-access-key-id"
SECRET_ACCESS_KEY = "test-secret-access-key-0123456789"  # moto accepts any keys
REGION = "us-east-1"


@dataclass
class S3Server:
    """A running moto server; ``new_bucket()`` gives each test a bucket of its own."""

    endpoint_url: str
    _server: Any
    _client: S3Client | None = field(default=None, repr=False)

    def options(self, bucket: str, prefix: str = "") -> dict[str, Any]:
        """S3Store's keyword arguments for ``bucket`` on this server."""
        return {
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
        }

    @property
    def client(self) -> S3Client:
        """A plain boto3 client of the server, for what the service never does (buckets)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY,
            )
        return self._client

    def new_bucket(self) -> str:
        name = f"haidang-test-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self._server.stop()


def start_server() -> S3Server | str:
    """A started server, or why none could start (the tests that need one then skip)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        return f"moto's server is not installed ({exc}); `make dev` installs it"
    # werkzeug logs every request at INFO: noise in a failing test's captured log. And it
    # logs moto's own failures with a traceback: puts of one key racing in moto's threaded
    # server now and then fail there (moto reads the ETag of a buffer another put has just
    # replaced) and are answered 500, which boto3 retries. That is the test server's
    # defect, not an exception escaping our code (the guard in conftest.py), so those
    # records stay out of the root logger and go to stderr (captured per test).
    server_log = logging.getLogger("werkzeug")
    server_log.setLevel(logging.WARNING)
    server_log.propagate = False
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
        host, port = server.get_host_and_port()
    except Exception as exc:  # a bind refused, a thread that died: say why, then skip
        return f"moto's server did not start on 127.0.0.1 ({type(exc).__name__}: {exc})"
    return S3Server(f"http://{host}:{port}", server)
