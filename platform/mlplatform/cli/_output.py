"""Shared CLI output: readable tables by default, ``--json`` for scripts; expected errors as one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlplatform.errors import MLPlatformError

if TYPE_CHECKING:
    # client() builds it on first use: a CLI command that needs no store never loads SQLAlchemy and Alembic
    from mlplatform.client import Client

T = TypeVar("T")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


_json_stream: Any = None


def reserve_stdout_for_json() -> None:
    """With ``--json``, stdout carries the JSON document only: everything else printed while the command runs
    (Ray's worker logs, Tune's progress, library prints) goes to stderr, so scripts can parse stdout."""
    global _json_stream
    if _json_stream is None:
        _json_stream = sys.stdout
        sys.stdout = sys.stderr


def print_json(data: Any) -> None:
    stream = _json_stream or sys.stdout
    stream.write(json.dumps(data, default=_default, indent=2, sort_keys=True) + "\n")
    stream.flush()


def console() -> Console:
    return Console(soft_wrap=True)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def emit(data: Any, as_json: bool, render: Callable[[], None]) -> None:
    if as_json:
        print_json(data)
    else:
        render()


@lru_cache(maxsize=1)
def client() -> Client:
    # heavy: the SQL store loads only when this command runs, not for --help
    from mlplatform.client import Client

    return Client()


@contextmanager
def expected_errors() -> Iterator[None]:
    """Translate platform errors to one line on stderr and the category's exit code."""
    try:
        yield
    except MLPlatformError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
