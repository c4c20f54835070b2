"""The config loader as the stage configs import it: one strict base and one ``load_config``, defined in
:mod:`mlplatform._internal.config_file` (below every layer, so that ``features/`` loads its files through it too)."""

from mlplatform._internal.config_file import (
    StrictModel,
    config_from_dict,
    load_config,
    read_yaml,
    semantic_error,
    validation_error,
)

__all__ = ["StrictModel", "config_from_dict", "load_config", "read_yaml", "semantic_error", "validation_error"]
