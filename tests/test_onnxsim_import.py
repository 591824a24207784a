"""onnxsim is imported without torch (transforms/simplify.import_onnxsim): torch costs seconds to
import and nothing we call in onnxsim needs it. Each test runs in a fresh interpreter, with a stand-in
`torch` package first on sys.path that records being imported, so the tests mean the same with and
without torch installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FAKE_TORCH = "import os\nos.environ['FAKE_TORCH_IMPORTED'] = '1'\n"

SCRIPT = textwrap.dedent("""
    import builtins, json, os, sys
    sys.path.insert(0, sys.argv[1])
    real_import, tried = builtins.__import__, []
    def spy(name, globals=None, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            tried.append((globals or {}).get("__name__"))
        return real_import(name, globals, *args, **kwargs)
    builtins.__import__ = spy
    if sys.argv[2] == "torch-first":
        import torch
    from onnx2trt_check.transforms.simplify import import_onnxsim
    onnxsim = import_onnxsim()
    during = os.environ.get("FAKE_TORCH_IMPORTED") == "1"
    import torch  # the process can still import torch afterwards
    print(json.dumps({"during": during, "tried": sorted(set(filter(None, tried))), "torch": torch.__file__,
                      "simplify": callable(onnxsim.simplify), "marker": "torch" in sys.modules and sys.modules["torch"] is not None}))
""")


def run(tmp_path, mode: str) -> dict:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(FAKE_TORCH)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_onnxsim_is_imported_without_importing_torch(tmp_path):
    from onnx2trt_check.transforms.simplify import ONNXSIM_TORCH_IMPORTERS

    result = run(tmp_path, "fresh")
    assert not result["during"], "onnxsim's import executed torch"
    assert result["simplify"]
    # Every onnxsim module that tries torch at import is one we know guards it; a new one in a
    # newer onnxsim must be checked (and listed) before it may be imported without torch.
    tried = [name for name in result["tried"] if name.startswith("onnxsim")]
    assert set(tried) <= set(ONNXSIM_TORCH_IMPORTERS), tried
    assert result["torch"].startswith(str(tmp_path)) and result["marker"]  # torch importable afterwards


def test_a_process_that_imported_torch_keeps_it(tmp_path):
    result = run(tmp_path, "torch-first")
    assert result["during"] and result["marker"] and result["simplify"]
