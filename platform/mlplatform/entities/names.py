"""Model names, aliases and references: pure string rules shared by the config, the client and the store."""

from __future__ import annotations

import re

from mlplatform.errors import InvalidInput

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_REF = re.compile(r"^(?P<name>[^:@\s]+)(?::(?P<version>\d+)|@(?P<alias>[^:@\s]+))?$")


def validate_model_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput(f"model name {name!r} must match {NAME_PATTERN.pattern}", field="model")
    return name


def validate_alias(alias: str) -> str:
    if not ALIAS_PATTERN.match(alias or "") or alias.isdigit():
        raise InvalidInput(f"alias {alias!r} must be lower-case letters, digits, '_' or '-', starting with a "
                           "letter", field="alias")
    return alias


def parse_model_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``name`` (the champion), ``name:version`` or ``name@alias``."""
    match = _REF.match(ref or "")
    if not match:
        raise InvalidInput(f"model reference {ref!r} must be name, name:version or name@alias", field="model")
    name = validate_model_name(match["name"])
    version = int(match["version"]) if match["version"] else None
    if version is not None and version < 1:
        raise InvalidInput("model versions start at 1", field="version")
    alias = validate_alias(match["alias"]) if match["alias"] else None
    return name, version, alias
