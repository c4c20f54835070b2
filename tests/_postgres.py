"""A throwaway PostgreSQL server for contract tests, from Debian's ``postgresql`` package.

``MLPLATFORM_TEST_PG_URL`` wins when set. Otherwise ``initdb`` + ``pg_ctl`` start a private server on a free
loopback port (as the ``postgres`` user when running as root, because PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from tests._net import free_port, wait_for_port

ENABLE_HINT = ("install Debian's postgresql package (`.ci/run` does) or set MLPLATFORM_TEST_PG_URL="
               "postgresql+psycopg://user:pass@127.0.0.1:5432/db")


def _pg_bin() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


@contextmanager
def throwaway_server() -> Iterator[str | None]:
    """Yields a superuser URL, or None (with no server) when PostgreSQL is not installed."""
    bindir = _pg_bin()
    if bindir is None:
        yield None
        return
    workdir = tempfile.mkdtemp(prefix="mlplatform-pg-")
    datadir = os.path.join(workdir, "data")
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(workdir, "postgres")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run([*prefix, f"{bindir}/initdb", "-D", datadir, "-U", "mlp", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, env=env, cwd=workdir)
    subprocess.run([*prefix, f"{bindir}/pg_ctl", "-D", datadir, "-l", os.path.join(workdir, "log"), "-w", "-o",
                    f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                    "start"], check=True, capture_output=True, env=env, cwd=workdir)
    try:
        wait_for_port(port, 30.0)
        yield f"postgresql+psycopg://mlp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, f"{bindir}/pg_ctl", "-D", datadir, "-m", "immediate", "stop"],
                       capture_output=True, env=env, cwd=workdir)
        shutil.rmtree(workdir, ignore_errors=True)
