"""A real S3 API on 127.0.0.1 for tests: moto's standalone server, as its own process.

moto needs ``python-dateutil<3`` (through botocore) while the project pins ``python-dateutil==4.0.0``, so the server
lives in its own small virtualenv with its own pins (``tests/s3server-requirements.txt``; ``make s3server`` or
``.ci/run`` builds it at ``.venv-s3server``). ``MLPLATFORM_TEST_MOTO_SERVER`` may name another ``moto_server``.
Nothing is mocked inside the test process: pyarrow, Ray Train, Tune and Ray Data talk HTTP to this server.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests._net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
ENABLE_HINT = ("run `make s3server` (a virtualenv with tests/s3server-requirements.txt at .venv-s3server) or set "
               "MLPLATFORM_TEST_MOTO_SERVER to a moto_server executable")
# moto accepts any credentials; these are fixed test values, not secrets.
ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


def _server_binary() -> str | None:
    candidate = os.environ.get("MLPLATFORM_TEST_MOTO_SERVER") or str(ROOT / ".venv-s3server" / "bin" / "moto_server")
    return candidate if os.access(candidate, os.X_OK) else None


@contextmanager
def moto_server() -> Iterator[str | None]:
    """Yields the endpoint ``127.0.0.1:PORT``, or None when no moto_server is installed."""
    binary = _server_binary()
    if binary is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30.0, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def new_bucket_uri(endpoint: str, prefix: str = "mlplatform") -> str:
    """A fresh bucket and the ``s3://`` URI of a prefix in it; the endpoint and test credentials ride in the URI,
    so every process that receives it (Ray workers included) reaches the same server without any environment."""
    import pyarrow.fs as pafs

    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=endpoint, scheme="http",
                           region=REGION, allow_bucket_creation=True)
    fs.create_dir(bucket)
    return (f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/{prefix}?endpoint_override={endpoint}&scheme=http"
            f"&region={REGION}")
