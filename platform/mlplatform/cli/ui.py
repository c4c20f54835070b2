"""``mlplatform ui``: the web console stand-alone (uvicorn), against this platform's store or any ``--store-url``."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplatform.cli._output import expected_errors
from mlplatform.config.serve import AuthConfig


def ui(port: int = typer.Option(8080, "--port", help="HTTP port."),
       host: str = typer.Option("127.0.0.1", "--host", help="Bind address (default loopback only)."),
       store_url: str = typer.Option(None, "--store-url", help="Store URL (default: MLPLATFORM_STORE_URL / home)."),
       reports_dir: Path = typer.Option(None, "--reports-dir",
                                        help="`monitor report` output to link (default MLPLATFORM_HOME/reports)."),
       auth: bool = typer.Option(False, "--auth/--no-auth",
                                 help="Require the serving bearer token on every page and action."),
       token_secret: str = typer.Option("MLPLATFORM_SERVE_TOKEN", "--token-secret",
                                        help="Secret holding the token (file in NAME_FILE, else env NAME).")) -> None:
    """Browse models, lineage, alias history, runs, datasets, rollouts and alerts in a web page."""
    # heavy: uvicorn loads only when this command runs, not for --help
    import uvicorn

    from mlplatform.console.app import ConsoleConfig, create_app

    with expected_errors():
        app = create_app(ConsoleConfig(store_url=store_url, reports_dir=str(reports_dir) if reports_dir else None,
                                       auth=AuthConfig(enabled=auth, token_secret=token_secret)))
    typer.echo(f"console at http://{host}:{port}/  (store {app.state.client.display_url}; Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
