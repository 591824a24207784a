"""The layers of the package, read from its source: the library imports no face and no pytest, the
CLI never imports the pytest face, nothing imports a face but itself, and no import circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "onnx2trt_check"
FACES = ("onnx2trt_check.pytest_plugin", "onnx2trt_check.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function, as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imported(p) for p in PACKAGE.rglob("*.py")}


def internal(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES}


def in_face(name: str) -> bool:
    return any(name == face or name.startswith(face + ".") for face in FACES)


def test_the_library_imports_no_face_and_no_pytest():
    offenders = {
        module: sorted(n for n in names if in_face(n) or n.split(".")[0] in ("pytest", "_pytest"))
        for module, names in MODULES.items()
        if not in_face(module) and module != "onnx2trt_check.api"  # api.check starts pytest, like the CLI's check
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_the_cli_never_imports_the_pytest_face():
    offenders = {m: sorted(n for n in names if n.startswith("onnx2trt_check.pytest_plugin")) for m, names in MODULES.items() if m.startswith("onnx2trt_check.cli")}
    assert {m: n for m, n in offenders.items() if n} == {}


def test_no_import_circles():
    graph = {module: internal(names) - {module} for module, names in MODULES.items()}
    cycles = []

    def visit(node, stack, on_stack, done):
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_stack and not _is_package_of(nxt, node):
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done and nxt not in on_stack:
                visit(nxt, stack, on_stack, done)
        on_stack.discard(node)
        stack.pop()
        done.add(node)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [], set(), done)
    assert cycles == []


def _is_package_of(package: str, module: str) -> bool:
    """A package's __init__ that lists its own submodules (a registry) is not a circle with them."""
    return module.startswith(package + ".")


def test_every_module_stays_small():
    sizes = {module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > 450} == {}


@pytest.mark.parametrize("entry", ["onnx2trt_check", "onnx2trt_check.pytest_plugin.plugin", "onnx2trt_check.cli.main"])
def test_entry_points_import_nothing_heavy(entry):
    code = (
        "import sys, importlib; importlib.import_module(%r); "
        "heavy = [m for m in ('onnx', 'onnxruntime', 'numpy', 'polygraphy', 'onnx_ir', 'scipy', 'sympy', 'onnxsim', 'tensorrt_rtx') if m in sys.modules]; "
        "print(','.join(heavy))" % entry
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_a_pytest_run_without_model_imports_nothing_heavy(pytester):
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    pytester.makeconftest(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    heavy = [m for m in ('onnx', 'onnxruntime', 'numpy', 'polygraphy', 'onnx_ir', 'sympy', 'onnxsim', 'tensorrt_rtx') if m in sys.modules]\n"
        "    print('HEAVY:' + ','.join(heavy))\n"
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HEAVY:"])


def test_a_model_run_that_builds_no_polygraphy_chain_does_not_import_polygraphy(pytester):
    """`--target ort` needs no TensorRT runner: Polygraphy (about 0.1 s) is imported by the items
    that build one, not at startup (issue 18)."""
    from tiny_models import classifier, save  # noqa: PLC0415

    save(classifier(), pytester.path / "m.onnx")
    pytester.makeconftest(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    print('POLYGRAPHY:' + str('polygraphy' in sys.modules))\n"
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:randomly", "--model", "m.onnx", "--target", "ort", "-k", "structure or reference or target")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*POLYGRAPHY:False*"])
