"""``mlplatform serve up|status|down``: the prediction API on Ray Serve (same YAML as ``serve deploy``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from mlplatform.cli._output import JsonOption, client, emit, expected_errors, print_table
from mlplatform.errors import Unavailable
from mlplatform.serving import deploy
from mlplatform.serving.deploy import THROUGHPUT_ENV
from mlplatform.serving.request_id import PROXY_ENV
from mlplatform.settings import get_settings

app = typer.Typer(help="Online serving on Ray Serve: deploy, inspect and stop the prediction API.",
                  no_args_is_help=True)
AddressOption = typer.Option(None, "--address", help="Ray address (default: MLPLATFORM_RAY_ADDRESS, else 'auto').")


def _connect(address: str | None, *, start: bool, high_throughput: bool = False) -> None:
    """Join the running Ray cluster; with ``start``, run ``ray start --head`` first when none is running.

    Serve's controller is a detached actor, so the apps keep running after this CLI process exits."""
    # heavy: Ray loads only when this command runs, not for --help
    import ray

    if ray.is_initialized():  # embedded use (tests, notebooks): reuse the caller's connection
        return
    target = address or get_settings().ray_address or "auto"
    try:
        ray.init(address=target, logging_level=logging.WARNING, log_to_driver=False)
        if high_throughput:
            typer.echo("Ray was already running: only the replicas get RAY_SERVE_THROUGHPUT_OPTIMIZED=1; for the "
                       "controller and proxies too, restart Ray with it exported (ray stop; "
                       "RAY_SERVE_THROUGHPUT_OPTIMIZED=1 ray start --head)", err=True)
        return
    except ConnectionError:
        if not start or target != "auto":
            raise Unavailable(f"no Ray cluster at {target}; start one with `ray start --head`") from None
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_bin is None:
        raise Unavailable("no Ray cluster is running and the `ray` command was not found")
    typer.echo("no Ray cluster running; starting one with `ray start --head`", err=True)
    # Serve's controller and proxies read RAY_SERVE_THROUGHPUT_OPTIMIZED and the proxy callback (which cleans
    # X-Request-ID before the proxy echoes it) when they start: give them to Ray itself
    env = {**os.environ, **PROXY_ENV, **(THROUGHPUT_ENV if high_throughput else {})}
    done = subprocess.run([ray_bin, "start", "--head", "--disable-usage-stats"], capture_output=True, text=True,
                          check=False, env=env)
    if done.returncode != 0:
        raise Unavailable(f"`ray start --head` failed: {done.stderr.strip()[-400:]}")
    ray.init(address="auto", logging_level=logging.WARNING, log_to_driver=False)


def _sample_instance(ref: str) -> dict[str, Any]:
    """One plausible instance from the model's input schema, for the curl line."""
    try:
        schema = client().registry.resolve(ref).input_schema
    except Exception:  # the curl line is a convenience; never fail `up` over it
        return {"feature": 1.0}
    return {f["name"]: (f.get("categories") or ["a"])[0] if f["dtype"] == "category"
            else round(float(f.get("min") or 0.0), 2) for f in schema}


@app.command()
def up(config: Path = typer.Option(Path("serve_apps/config.yaml"), "--config", help="Serve YAML to deploy."),
       model: str = typer.Option(None, "--model", help="Serve only this model ref (name, name:3, name@alias)."),
       port: int = typer.Option(None, "--port", help="HTTP port (default from the config, 8000)."),
       host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
       address: str = AddressOption,
       start_ray: bool = typer.Option(True, "--start-ray/--no-start-ray",
                                      help="Start a local Ray head when none is running."),
       high_throughput: bool = typer.Option(
           False, "--high-throughput/--default-mode",
           help="Ray Serve's throughput-optimized mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for the replicas, and "
                "for Ray itself when this command starts it): gRPC between deployments and a direct-ingress "
                "HTTP port (30000-31000) on each ingress replica, ~14x the proxy's req/s here. Off by default: "
                "with HAProxy in front (RAY_SERVE_ENABLE_HA_PROXY=1) Serve binds all interfaces, not 127.0.0.1."),
       console: bool = typer.Option(True, "--console/--no-console",
                                    help="Also serve the web console at /console (same port, store and auth)."),
       as_json: bool = JsonOption) -> None:
    """Deploy the prediction API; deploying again with a new version reloads replicas in place."""
    with expected_errors():
        settings = get_settings()
        document = deploy.prepare(deploy.load_config(config), model=model, port=port, host=host,
                                  store_url=settings.shareable_store_url(),
                                  artifact_uri=settings.resolved_artifact_uri(), home=str(settings.home),
                                  high_throughput=high_throughput, console=console)
        _connect(address, start=start_ray, high_throughput=high_throughput)
        deploy.deploy(document)
    url = deploy.endpoint(document)
    args = document["applications"][0]["args"]
    first = (args.get("models") or [None])[0] or {"name": args["ensembles"][0]["name"],
                                                   "ref": args["ensembles"][0]["members"][0]}
    name, ref = first["name"], first.get("ref") or f"{first['name']}@champion"
    body = json.dumps({"instances": [_sample_instance(ref)]})
    curl = f"curl -s -X POST {url}/v1/models/{name}:predict -H 'Content-Type: application/json' -d '{body}'"
    direct: list[str] = []
    if high_throughput:
        with expected_errors():
            direct = deploy.direct_ingress().get(document["applications"][0]["name"], [])
    lines = [f"serving at {url}", f"  models: {url}/v1/models", f"  docs:   {url}/docs", f"  try:    {curl}"]
    lines += [f"  direct ingress (no proxy hop): {d}" for d in direct]
    console_url = deploy.console_url(document)
    if console_url:
        lines.append(f"  console: {console_url}")
    emit({"endpoint": url, "models": [m["name"] for m in [*args.get("models", []), *args.get("ensembles", [])]],
          "curl": curl, "direct_ingress": direct, "console": console_url}, as_json,
         lambda: typer.echo("\n".join(lines)))


@app.command()
def status(address: str = AddressOption, as_json: bool = JsonOption) -> None:
    """Applications, deployments and replica states (same facts as `serve status`)."""
    with expected_errors():
        _connect(address, start=False)
        data = deploy.status()
    rows = [{"app": app_name, "app_status": info["status"], "deployment": dep, "status": d["status"],
             "replicas": ", ".join(f"{k}={v}" for k, v in sorted(d["replicas"].items()))}
            for app_name, info in data["applications"].items() for dep, d in info["deployments"].items()]
    def show() -> None:
        print_table(rows, ["app", "app_status", "deployment", "status", "replicas"], title="serve")
        for app_name, urls in data.get("direct_ingress", {}).items():
            typer.echo(f"direct ingress {app_name}: {', '.join(urls)}")

    emit(data, as_json, show)


@app.command()
def down(app_name: str = typer.Option(None, "--app", help="Delete only this application."),
         address: str = AddressOption) -> None:
    """Stop serving: delete one application, or shut Serve down (in-flight requests drain first)."""
    # heavy: Ray loads only when this command runs, not for --help
    from ray import serve

    with expected_errors():
        _connect(address, start=False)
        if app_name:
            serve.delete(app_name)
            typer.echo(f"deleted application {app_name}")
        else:
            serve.shutdown()
            typer.echo("Serve shut down")
