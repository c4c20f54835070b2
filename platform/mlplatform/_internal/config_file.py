"""The one way a config file becomes a typed model: :class:`StrictModel` (unknown fields are errors) and
:func:`load_config`, whose every error names the file, the field and what is wrong.

It sits at the bottom of the layers (it imports only pydantic, YAML and the errors), so that every layer loads its
files through it: the stage configs in ``config/`` (which re-exports it as :mod:`mlplatform.config.base`) and the
feature views of ``features/``. ``config/`` itself is a leaf of the stages: it imports no stage, client or store.
Checks that need a registry (model families, losses) live in a model's ``validate_semantics()``, which
:func:`config_from_dict` runs after the shape is valid and whose ``InvalidInput`` it words the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mlplatform.errors import ConfigError, InvalidInput

M = TypeVar("M", bound=BaseModel)
# Tags pydantic puts in an error's location for a discriminated union: not field names.
_UNION_TAGS = {"dim", "const"}


class StrictModel(BaseModel):
    """Base of every config section: a misspelt field is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def read_yaml(path: Path | str, list_key: str | None = None) -> dict[str, Any]:
    """The YAML mapping in ``path``; with ``list_key``, a top-level list reads as ``{list_key: [...]}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", field="config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})", field="config") from None
    if data is None:
        data = {}
    if list_key is not None and isinstance(data, list):
        data = {list_key: data}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}", field="config")
    return data


def validation_error(source: str, exc: ValidationError) -> ConfigError:
    """The first pydantic error as one line: ``file: field.path: message``."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in _UNION_TAGS) or "<root>"
    message = first.get("msg", "invalid")
    if first.get("type") == "extra_forbidden":
        message = "unknown field (check the spelling; see the documented fields)"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(f"{source}: {where}: {message}{more}", field=where)


def semantic_error(source: str, exc: InvalidInput) -> ConfigError:
    return ConfigError(f"{source}: {exc.field}: {exc.message}", field=exc.field)


def config_from_dict(data: dict[str, Any], model: type[M], source: str = "<config>") -> M:
    """Validate ``data`` as ``model`` (then its ``validate_semantics()``, when it has one); any problem raises
    ConfigError naming ``source`` and the field."""
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(source, exc) from None
    except InvalidInput as exc:  # a validator that raised a platform error (it names its own field) passes through
        raise semantic_error(source, exc) from None
    check = getattr(config, "validate_semantics", None)
    if check is not None:
        try:
            check()
        except InvalidInput as exc:
            raise semantic_error(source, exc) from None
    return config


def load_config(path: Path | str, model: type[M], overrides: dict[str, Any] | None = None,
                list_key: str | None = None) -> M:
    """Read a YAML file into ``model``; ``overrides`` replace top-level keys (CLI flags); ``list_key``: the field a
    file holding only a list fills."""
    data = read_yaml(path, list_key)
    data.update(overrides or {})
    return config_from_dict(data, model, str(path))
