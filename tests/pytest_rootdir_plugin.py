"""pytest plugin (loaded by ``-p`` in pyproject.toml): collect the pack's root as a plain folder.

The root ``__init__.py`` is ComfyUI's entry point and uses relative imports; pytest (≥ 8)
would import it as a test package's ``__init__`` and fail before any test runs. Tests load
the pack through ``cutout_standalone`` instead (see tests/conftest.py).
"""

from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path, parent):
    if Path(path).resolve() == _ROOT:
        return pytest.Dir.from_parent(parent, path=Path(path))
    return None
