"""Load a YAML file into a pydantic model; errors name the file, the field and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mlplatform.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path | str) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", field="config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})", field="config") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}", field="config")
    return data


def validation_error(source: str, exc: ValidationError) -> ConfigError:
    """The first pydantic error as one line: ``file: field.path: message``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
    message = first.get("msg", "invalid")
    if first.get("type") == "extra_forbidden":
        message = "unknown field (check the spelling; see the documented fields)"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(f"{source}: {where}: {message}{more}", field=where)


def load_model(path: Path | str, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    data = read_yaml(path)
    data.update(overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(str(path), exc) from None
