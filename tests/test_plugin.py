"""End-to-end runs of `pytest --model` with pytester: ids, exit codes, summary, report, bad input."""

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from tiny_models import classifier, save

from onnx2trt_check.targets.ort import OrtTarget

EXPECTED_IDS = [
    "m.onnx::structure::checker",
    "m.onnx::structure::shape_inference",
    "m.onnx::structure::versions",
    "m.onnx::structure::finite_weights",
    "m.onnx::structure::trt_ops",
    "m.onnx::structure::trt_parse",
    "m.onnx::reference::run",
    "m.onnx::target::accuracy[ort]",
    "m.onnx::target::accuracy[ort-fp16]",
    "m.onnx::target::accuracy[cpu-fp16-emu]",
    "m.onnx::transform::equivalence[simplify]",
    "m.onnx::transform::equivalence[optimize]",
    "m.onnx::transform::equivalence[fuse_repconv]",
    "m.onnx::transform::equivalence[bn_across_maxpool]",
    "m.onnx::transform::equivalence[fold_conv_bn]",
    "m.onnx::transform::equivalence[fold_gemm_bn]",
    "m.onnx::transform::equivalence[fuse_input_normalization]",
    "m.onnx::transform::equivalence[fold_bn_conv]",
    "m.onnx::transform::equivalence[fold_bn_gemm]",
    "m.onnx::transform::equivalence[remove_output_sigmoid]",
    "m.onnx::transform::equivalence[output_tail]",
    "m.onnx::transform::equivalence[pipeline]",
    "m.onnx::fp16::report[artifact]",
    "m.onnx::trt::build[fp32]",
    "m.onnx::trt::build[fp16]",
]
# The foundation's own checks (structure, reference, the ort target), apart from later families.
CORE = ("--target", "ort", "-k", "structure or reference or target")


@pytest.fixture
def model_path(pytester):
    return save(classifier(), pytester.path / "m.onnx")


def test_item_ids_are_stable(pytester, model_path):
    result = pytester.runpytest("--model", "m.onnx", "--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == EXPECTED_IDS


def test_a_good_model_passes_with_a_summary_and_the_file_untouched(pytester, model_path):
    before = model_path.read_bytes()
    result = pytester.runpytest("--model", "m.onnx", *CORE)
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(
        [
            "*onnx2trt_check summary*",
            "m.onnx",
            "*note: input 'x': dynamic batch dim 'N' set to 1",
            "*structure*PASSED*6 passed*5 nodes, opset 17, IR 8",
            "*reference*PASSED*",
            "*target[[]ort[]]*PASSED*[[]onnxruntime[]] max abs*SQNR*top-1*",
        ]
    )
    assert model_path.read_bytes() == before


def test_a_folder_means_every_onnx_in_it(pytester):
    (pytester.path / "zoo").mkdir()
    save(classifier(), pytester.path / "zoo" / "a.onnx")
    save(classifier(seed=1), pytester.path / "zoo" / "b.onnx")
    result = pytester.runpytest("--model", "zoo", "--collect-only", "-q", *CORE)
    ids = [line for line in result.outlines if "::" in line]
    assert len(ids) == 16 and ids[0].startswith("zoo/a.onnx::") and ids[-1].startswith("zoo/b.onnx::")


def test_json_report_is_schema_versioned_and_carries_figures(pytester, model_path):
    pytester.runpytest("--model", "m.onnx", "--report-json", "r.json", *CORE).assert_outcomes(passed=8)
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["schema_version"] == 1 and report["tool"] == "onnx2trt_check" and report["exit_status"] == 0
    model = report["models"]["m.onnx"]
    assert model["sha256"] == __import__("hashlib").sha256(model_path.read_bytes()).hexdigest()
    accuracy = model["families"]["target[ort]"]["checks"]["accuracy"]
    assert accuracy["outcome"] == "passed" and accuracy["figures"]["outputs"]["logits"]["max_abs"] < 1e-4
    # a report is replaced by the next run, but no other file ever is
    pytester.runpytest("--model", "m.onnx", "--report-json", "r.json", *CORE).assert_outcomes(passed=8)
    (pytester.path / "notes.json").write_text('{"mine": true}')
    result = pytester.runpytest("--model", "m.onnx", "--report-json", "notes.json", *CORE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (pytester.path / "notes.json").read_text() == '{"mine": true}'


@pytest.fixture
def noisy_ort(monkeypatch):
    """Make the `ort` target's outputs off by about 1e-3 so the accuracy verdict has to fail."""
    original = OrtTarget.run

    def run(self, model_path, feeds):
        outputs = original(self, model_path, feeds)
        return [{k: v + np.float32(1e-3) for k, v in o.items()} for o in outputs]

    monkeypatch.setattr(OrtTarget, "run", run)


def test_accuracy_failure_message_gives_statistics_mismatches_and_passing_tolerance(pytester, model_path, noisy_ort):
    result = pytester.runpytest_inprocess("--model", "m.onnx", "--report-json", "r.json", *CORE)
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ort (ONNX Runtime CPU, all graph optimizations) differs from the reference in 1 of 1 output(s)",
            "*output 'logits': 40 of 40 elements (100%) outside atol=0.0001 rtol=0.0001",
            "*max abs 0.001*SQNR*",
            "*feed 0 at [[]0, 0[]]: ref *, got * (abs err 0.001)",
            "*would pass with atol=0.0009* (rtol=0.0001) or rtol=*",
            "*target[[]ort[]]*FAILED*",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["exit_status"] == 1
    assert report["models"]["m.onnx"]["families"]["target[ort]"]["verdict"] == "failed"


def test_tolerances_from_pyproject_ini_and_command_line(pytester, model_path, noisy_ort):
    pytester.makepyprojecttoml("[tool.onnx2trt_check]\natol = 2e-3\n")
    pytester.runpytest_inprocess("--model", "m.onnx", *CORE).assert_outcomes(passed=8)
    pytester.makeini("[pytest]\nonnx2trt_atol = 1e-5\n")  # the ini wins over pyproject
    pytester.runpytest_inprocess("--model", "m.onnx", *CORE).assert_outcomes(passed=7, failed=1)
    pytester.runpytest_inprocess("--model", "m.onnx", "--output-tolerance", "logits:atol=2e-3", *CORE).assert_outcomes(passed=8)
    pytester.runpytest_inprocess("--model", "m.onnx", "--atol", "0", "--rtol", "0", "--min-sqnr", "20", *CORE).assert_outcomes(passed=7, failed=1)


def test_nan_weights_and_unsupported_ops_fail_their_items(pytester):
    model = classifier()
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights[0, 0, 0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights, "w"))
    model.graph.node.append(helper.make_node("MyPlugin", ["logits"], ["extra"], domain="com.example", name="plugin_node"))
    model.graph.output.append(helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    save(model, pytester.path / "m.onnx")
    result = pytester.runpytest("--model", "m.onnx", "-rs", *CORE)
    result.stdout.fnmatch_lines(["*1 weight tensor(s) hold NaN/Inf: 'w' (1 NaN, 0 inf in a weight)*", "*node 'plugin_node' (com.example::MyPlugin*TensorRT plugin*"])
    result.stdout.fnmatch_lines(["*cannot be verified: no reference outputs, the reference run failed*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def _bad_inputs(pytester):
    np.savez(pytester.path / "wrong_name.npz", y=np.zeros((1, 3, 8, 8), np.float32))
    (pytester.path / "junk.npz").write_text("junk")
    (pytester.path / "notonnx.onnx").write_text("hello")
    (pytester.path / "truncated.onnx").write_bytes(classifier().SerializeToString()[:300])
    dynamic = classifier(batch=1)
    dynamic.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    save(dynamic, pytester.path / "dynamic.onnx")
    onnx.save(classifier(), str(pytester.path / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    (pytester.path / "ext.data").unlink()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "missing.onnx"], "model file 'missing.onnx' does not exist; check the --model path"),
        (["--model", "notonnx.onnx"], "*notonnx.onnx' is not a valid ONNX model*re-export it"),
        (["--model", "truncated.onnx"], "*truncated.onnx' is not a valid ONNX model*"),
        (["--model", "ext.onnx"], "*keeps its data in 'ext.data', which is missing next to the model; copy the external data file beside it"),
        (["--model", "dynamic.onnx"], "input 'x' has dynamic dim 'H'; pass --input-shape x:1x3xNx8 with N set, or input data that fixes it"),
        (["--model", "m.onnx", "--inputs", "wrong_name.npz"], "--inputs 'wrong_name.npz' has array 'y', which is not an input of the model; inputs: x"),
        (["--model", "m.onnx", "--inputs", "junk.npz"], "--inputs 'junk.npz' is not an .npz archive (not a zip file)*"),
        (["--model", "m.onnx", "--target", "trt"], "unknown target 'trt'; choose from: *"),
        (["--model", "m.onnx", "--output-tolerance", "logits:fast=1"], "*unknown tolerance 'fast'*"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(pytester, model_path, args, message):
    _bad_inputs(pytester)
    # the first case runs as a real subprocess, so the exit code and stderr are exactly a user's
    run = pytester.runpytest_subprocess if args == ["--model", "missing.onnx"] else pytester.runpytest_inprocess
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_xdist_workers_report_every_item_to_the_controller(pytester, model_path):
    result = pytester.runpytest_subprocess("--model", "m.onnx", "-n", "2", "--report-json", "r.json", *CORE)
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*structure*PASSED*", "*reference*PASSED*", "*target[[]ort[]]*PASSED*"])
    report = json.loads((pytester.path / "r.json").read_text())
    assert len(report["models"]["m.onnx"]["families"]["structure"]["checks"]) == 6


def test_without_model_the_plugin_stays_out_of_the_way(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    pytester.runpytest().assert_outcomes(passed=1)
