"""Load a script of ``tools/`` (not a package) as a module, for the tests that check it."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from companion.book import book_root


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` of this clone, imported as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, book_root() / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
