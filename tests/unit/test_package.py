"""Package hygiene: the stdlib ``platform`` is not shadowed, the public API is in sync, imports have no cycles."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import mlplatform

ROOT = Path(__file__).resolve().parents[2]


def test_platform_is_still_the_stdlib_module() -> None:
    import platform

    assert hasattr(platform, "python_version")
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_public_api_is_sorted_and_importable() -> None:
    assert mlplatform.__all__ == sorted(mlplatform.__all__) == sorted(mlplatform._EXPORTS)
    for name in mlplatform.__all__:
        assert getattr(mlplatform, name) is not None
    public = {n for n, v in vars(mlplatform).items() if not n.startswith("_") and not isinstance(v, ModuleType)}
    assert public - set(mlplatform.__all__) == set(), "exported names must be listed in __all__"


def test_every_module_imports_in_a_fresh_process() -> None:
    names = [m.name for m in pkgutil.walk_packages(mlplatform.__path__, "mlplatform.")
             if ".migrations" not in m.name]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]


def test_errors_pickle_and_map_to_http_and_exit_codes() -> None:
    import pickle

    from mlplatform.errors import (
        GateFailed,
        IntegrityError,
        InvalidInput,
        NotFound,
        Overloaded,
        PayloadTooLarge,
        Timeout,
        exit_code_for,
        http_status_for,
    )

    err = InvalidInput("bad value", field="age", row=3)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is InvalidInput and clone.field == "age" and clone.details == {"row": 3}
    assert [http_status_for(e("x")) for e in (NotFound, InvalidInput, PayloadTooLarge, Overloaded, Timeout)] == [
        404, 422, 413, 503, 504]
    assert [exit_code_for(e("x")) for e in (NotFound, InvalidInput, GateFailed, IntegrityError)] == [2, 2, 3, 2]
    assert exit_code_for(RuntimeError("boom")) == 1 and http_status_for(RuntimeError()) == 500
