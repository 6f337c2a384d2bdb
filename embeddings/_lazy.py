"""Lazy re-exports for subpackage ``__init__`` modules: a public name is imported from its module
on first access, so importing one light submodule (say ``embeddings.index.factory``) does not
import faiss, torch or PyAV through its package."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def reexport(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """Build a package's module ``__getattr__`` (PEP 562) and ``__all__`` from a name -> module map.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict of str to str
        Public name -> submodule (relative to ``package``) that defines it.

    Returns
    -------
    (getattr, all) : tuple
        ``__getattr__`` imports ``package.exports[name]`` on first access, caches the value in the
        package and returns it; names not in ``exports`` raise AttributeError (so ``from package
        import submodule`` still falls back to importing the submodule).
    """
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{exports[name]}"), name)
        setattr(import_module(package), name, value)
        return value

    return __getattr__, sorted(exports)
