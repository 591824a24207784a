"""sympy, which onnx-ir imports at its top, loaded on its first use instead (issue 18).

onnx-ir (1.1.0) imports sympy at the top of `onnx_ir._core`, and `onnx_ir._symbolic_shapes` builds a
table of sympy functions when imported. Both serve symbolic dimension arithmetic (`SymbolicDim`
expressions such as "N+1"), which none of our checks does; importing sympy costs 0.4-0.6 s, about a
third of a small model's whole run. `defer_sympy()` puts a stand-in for each of the two modules into
`sys.modules`; the first attribute read from a stand-in runs the module's code in it, and it is
that module from then on. So a program that does use sympy (ours, onnx-ir's arithmetic, a user's
metric) gets the real one, only later: the results are the same either way.

Why not `importlib.util.LazyLoader`: in Python 3.11 the `import sympy` statement in onnx-ir reads the
module's `__spec__`, which makes a LazyLoader module load at once. A stand-in here keeps its
`__spec__` (and `__name__`, `__file__`, `__loader__`, `__package__`) as plain attributes, so the
import statement binds it without loading it; reading anything else, `__path__` included (a
submodule's import), loads it.

Called by the entry points before anything imports onnx-ir (the plugin's configure with `--model`,
which the Python API's check goes through too, and the CLI); when sympy or onnx-ir is imported already, or either module cannot
be found, it does nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types

_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """Stands in for a module in sys.modules until an attribute it lacks is read; then it becomes
    that module (as importlib.util.LazyLoader's modules do): the module's code runs in this very
    object, so there is one module object, whoever imported it when."""

    def __getattr__(self, attribute: str):  # only for attributes the stand-in lacks: all but its spec
        _load(self)
        return getattr(self, attribute)

    def __dir__(self):
        _load(self)
        return dir(self)


def _load(stand_in: types.ModuleType) -> None:
    """Run the module's code in the stand-in, once; a failed import leaves it a stand-in, so the
    next read raises the import's error again. (A thread importing the module meanwhile would
    see it half-initialized, as with any import; our runs import it from one thread.)"""
    with _LOCK:
        if type(stand_in) is not _Deferred:
            return
        spec = stand_in.__spec__
        stand_in.__class__ = types.ModuleType
        if spec.submodule_search_locations is not None:
            stand_in.__path__ = spec.submodule_search_locations
        try:
            spec.loader.exec_module(stand_in)
        except BaseException:
            stand_in.__class__ = _Deferred
            vars(stand_in).pop("__path__", None)
            raise


def defer_sympy() -> None:
    """Stand-ins for sympy and for onnx-ir's module that uses it at import (see the docstring)."""
    if "sympy" in sys.modules or "onnx_ir" in sys.modules:
        return
    onnx_ir = importlib.util.find_spec("onnx_ir")
    specs = [importlib.util.find_spec("sympy")]
    if onnx_ir is not None and onnx_ir.submodule_search_locations:
        specs.append(importlib.machinery.PathFinder.find_spec("onnx_ir._symbolic_shapes", onnx_ir.submodule_search_locations))
    if None in specs:
        return
    for spec in specs:
        sys.modules[spec.name] = _stand_in(spec)


def _stand_in(spec: importlib.machinery.ModuleSpec) -> _Deferred:
    """What the import system and tools that scan sys.modules read (spec, file, loader, package) is
    the stand-in's own; its docstring, `__path__` and the rest load the module."""
    stand_in = _Deferred(spec.name)
    del stand_in.__doc__
    stand_in.__spec__, stand_in.__file__, stand_in.__loader__, stand_in.__package__ = spec, spec.origin, spec.loader, spec.parent
    stand_in.__cached__ = spec.cached
    return stand_in
