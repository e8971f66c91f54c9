"""The seed's top-level names, ``models``, ``losses`` and ``detector_model``, as aliases of this
package's modules.

The code lives in the installable ``mislabel`` package; the seed's layout keeps its names at the
repository root so that ``from models import build_model`` or ``import detector_model.lstm``
still work there. An alias is the very module object (not a copy), so a class, a constant or a
monkeypatch seen through either name is the same one. Submodules are aliased when first
imported, so ``import models`` stays as light as ``import mislabel.models``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

__all__ = ["alias"]


class _SubmoduleAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import <name>.<sub>`` with the module ``<target>.<sub>``."""

    def __init__(self, name: str, target: str) -> None:
        self.name, self.target = name, target

    def find_spec(self, fullname: str, path=None, target=None):
        if not fullname.startswith(self.name + "."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        module = importlib.import_module(self.target + spec.name[len(self.name):])
        module.__dict__.setdefault("__alias_spec__", module.__spec__)  # the import system overwrites __spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = module.__dict__.pop("__alias_spec__")


def alias(name: str, target: str) -> None:
    """Make ``import name`` and ``import name.<sub>`` give ``target`` and its submodules."""
    sys.modules[name] = importlib.import_module(target)
    if not any(isinstance(f, _SubmoduleAlias) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _SubmoduleAlias(name, target))  # before the path finder, which would load a copy
