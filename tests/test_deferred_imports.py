"""deferred_imports.py: sympy (imported by onnx-ir at its top) is loaded on first use, and a program
that uses it gets the same module and the same answers as without the deferral. Each case runs in
a fresh interpreter: the deferral acts on sys.modules."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiny_models import classifier, save

DEFER = "from onnx2trt_check.deferred_imports import defer_sympy\ndefer_sympy()\n"
LOADED = "def loaded(name):\n    return type(sys.modules[name]).__name__ == 'module'\n"


def run(script: str, cwd=None) -> str:
    done = subprocess.run([sys.executable, "-c", "import sys\n" + LOADED + script], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_onnx_ir_work_of_our_checks_leaves_sympy_unloaded(tmp_path):
    """From and to proto and shape inference on a model with a symbolic batch dim ("N"): what the
    transforms and the fp16 target do with onnx-ir."""
    path = save(classifier(), tmp_path / "m.onnx")
    script = DEFER + (
        "import onnx, onnx_ir as ir\n"
        "from onnx_ir.passes.common import ShapeInferencePass\n"
        f"model = ir.from_proto(onnx.load({str(path)!r}))\n"
        "ShapeInferencePass()(model)\n"
        "onnx.checker.check_model(ir.to_proto(model))\n"
        "print(loaded('sympy'), loaded('onnx_ir._symbolic_shapes'))\n"
    )
    assert run(script) == "False False"


ARITHMETIC = (
    "import onnx_ir as ir\n"
    "dim = ir.SymbolicDim('N+1')\n"
    "print((dim * 2 + 3).value, (dim // 2).value, dim == ir.SymbolicDim('N+1'))\n"
)


def test_symbolic_arithmetic_gives_the_same_answers_deferred_or_not():
    eager = run(ARITHMETIC)
    assert run(DEFER + ARITHMETIC + "print(loaded('sympy'))\n") == eager + "\nTrue"


def test_a_later_import_of_sympy_gets_the_one_real_module():
    script = DEFER + (
        "import onnx_ir._core as core\n"
        "import sympy\n"
        "from sympy import Symbol\n"
        "import sympy.core.numbers\n"
        "x = Symbol('x')\n"
        "print(sympy is sys.modules['sympy'] is core.sympy, loaded('sympy'), 'Symbol' in vars(sympy), sympy.expand((x + 1) ** 2))\n"
        "print(isinstance(sympy.Integer(2), sympy.core.numbers.Integer), sympy.__doc__.split()[0])\n"
    )
    assert run(script) == "True True True x**2 + 2*x + 1\nTrue SymPy"


def test_a_submodule_import_first_runs_the_package():
    script = DEFER + "import sympy.core.numbers\nimport sympy\nprint(loaded('sympy'), hasattr(sympy, 'Symbol'))\n"
    assert run(script) == "True True"


@pytest.mark.parametrize("first", ["import sympy", "import onnx_ir"])
def test_nothing_is_deferred_once_sympy_or_onnx_ir_is_imported(first):
    assert run(f"{first}\n" + DEFER + "print(type(sys.modules['sympy']).__name__)\n") == "module"


def test_a_model_run_never_loads_sympy_nor_imports_hypothesis(pytester):
    """The whole default check of a small model (the transforms, the fp16 target, the TensorRT
    items) does nothing with sympy: loading it would cost every run 0.4-0.6 s (issue 18). Nor
    does it import hypothesis (our test extra): hypothesis's own pytest plugin imports it at the
    end of every run where it is installed, which `-p no:hypothesispytest` leaves out here."""
    model = save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(
        "import sys\n"
        "def pytest_unconfigure(config):\n"
        "    print('SYMPY:' + type(sys.modules.get('sympy')).__name__, 'HYPOTHESIS:' + str('hypothesis' in sys.modules))\n"
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "-p", "no:hypothesispytest", "--model", str(model))
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*SYMPY:_Deferred HYPOTHESIS:False*"])
