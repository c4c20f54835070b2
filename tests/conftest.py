"""Shared fixtures: an isolated MLPLATFORM_HOME per test, SQLite and PostgreSQL stores, one shared local Ray."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests import _s3
from tests._postgres import ENABLE_HINT, throwaway_server

_ENV_PREFIXES = ("MLPLATFORM_",)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own home (store + artifacts) and no leaked MLPLATFORM_* settings."""
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES) and key != "MLPLATFORM_TEST_PG_URL":
            monkeypatch.delenv(key)
    home = tmp_path / "mlplatform-home"
    monkeypatch.setenv("MLPLATFORM_HOME", str(home))
    from mlplatform.cli import _output
    from mlplatform.settings import reset_settings

    reset_settings()
    _output.client.cache_clear()
    yield home
    reset_settings()
    _output.client.cache_clear()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    url = os.environ.get("MLPLATFORM_TEST_PG_URL")
    if url:
        yield url
        return
    try:
        with throwaway_server() as started:
            if started is None:
                pytest.skip(f"no PostgreSQL server: {ENABLE_HINT}")
            yield started
    except Exception as exc:  # initdb/pg_ctl failures: say why and how to fix it
        pytest.skip(f"could not start PostgreSQL ({exc}): {ENABLE_HINT}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API (moto's standalone server) on 127.0.0.1 for the whole session; yields ``host:port``."""
    try:
        with _s3.moto_server() as endpoint:
            if endpoint is None:
                pytest.skip(f"no S3 server: {_s3.ENABLE_HINT}")
            yield endpoint
    except RuntimeError as exc:
        pytest.skip(f"could not start the S3 server ({exc}): {_s3.ENABLE_HINT}")


@pytest.fixture
def s3_uri(s3_server: str) -> str:
    """``s3://...`` of a prefix in a fresh bucket on the session's S3 server."""
    return _s3.new_bucket_uri(s3_server)


def fresh_postgres_database(server_url: str) -> str:
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Contract tests take this fixture: the same body runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{isolated_env / 'store.db'}"
    else:
        url = fresh_postgres_database(request.getfixturevalue("postgres_server"))
    monkeypatch.setenv("MLPLATFORM_STORE_URL", url)
    from mlplatform.settings import reset_settings

    reset_settings()
    return url


@pytest.fixture
def client(isolated_env: Path):
    from mlplatform.client import Client

    c = Client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def churn_df() -> pd.DataFrame:
    from mlplatform.datasets.synthetic import make_churn

    return make_churn(3000, seed=7)


@pytest.fixture(scope="session")
def model_artifact_dir(tmp_path_factory: pytest.TempPathFactory, churn_df: pd.DataFrame) -> Path:
    """A small fitted logistic-regression artifact, built once per session."""
    from mlplatform.datasets.synthetic import FEATURES, TARGET
    from mlplatform.learning.sklearn_fit import fit_sklearn_artifact

    out = tmp_path_factory.mktemp("artifact") / "logistic"
    fit_sklearn_artifact(churn_df.iloc[:2000], target=TARGET, features=FEATURES, family="logistic", out_dir=out,
                         eval_data=churn_df.iloc[2000:])
    return out


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """One local Ray for the whole test session (starting Ray costs 3-8 s here). Yields the dashboard URL, which
    the Jobs API tests use. Started as a ``ray.cluster_utils.Cluster`` head so that every port can be chosen:
    the dashboard and its agent bind free ports on 127.0.0.1, never the defaults another Ray on the machine
    (a `make demo` head, a second test run) may hold."""
    import ray
    from ray.cluster_utils import Cluster

    from tests._net import free_port as _free_port

    if ray.is_initialized():
        yield _RAY.get("dashboard", "")
        return
    # Job entrypoints say `python ...`: let that be this venv's python, as `source .venv/bin/activate` would.
    venv_bin = str(Path(sys.executable).parent)
    if not os.environ.get("PATH", "").startswith(venv_bin):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    # Serve's proxy echoes X-Request-ID itself: the platform's proxy callback cleans it first (issue 16)
    from mlplatform.serving.request_id import PROXY_ENV

    for key, value in PROXY_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S", "3600")
    # A Ray of our own temp dir: a job's supervisor gives its driver the address of the newest cluster in its temp
    # dir ("auto"), so with the default /tmp/ray a job submitted here ran its driver on whichever Ray another
    # process (the other stream of `make test`, the demo) started last, and failed there ("Failed to download
    # runtime_env file package", "The actor never ran").
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 4, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": _free_port(),
        "dashboard_agent_listen_port": _free_port(), "temp_dir": temp_dir,
    })
    # named in that temp dir as `ray start` would name it: without the file the supervisor takes any Ray on the
    # machine (Ray's `_private` helper: the file's name and format are Ray's own)
    ray._private.utils.write_ray_address(cluster.address, temp_dir)
    context = ray.init(
        address=cluster.address, log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([
            str(Path(__file__).resolve().parents[1] / "platform"),
            str(Path(__file__).resolve().parents[1])])}},
    )
    _RAY["dashboard"] = f"http://{context.dashboard_url}"
    yield _RAY["dashboard"]
    ray.shutdown()
    cluster.shutdown()


_RAY: dict[str, str] = {}


@pytest.fixture(scope="session")
def serve_instance(ray_session: None) -> Iterator[str]:
    """One Serve instance on 127.0.0.1 and a free port (never 8000) for the session; yields its base URL.
    Tests delete the apps they deploy (serve.delete)."""
    import socket

    from ray import serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
