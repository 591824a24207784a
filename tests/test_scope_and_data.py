"""The model's scope, shapes settled by the data, data loaders drawn to a cap, and artifact writes
of large models through external data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from bad_input_files import qdq_relu
from bisect_models import feeds, qdq_model
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from tiny_models import classifier, parse, save, two_inputs

from onnx2trt_check import fileio
from onnx2trt_check.context import ModelContext, RunOptions
from onnx2trt_check.data import MAX_LOADER_FEEDS, FeedOptions, fit, read_source
from onnx2trt_check.errors import InputDataError, ModelError, OutputPathError
from onnx2trt_check.model import resolve_input_specs
from onnx2trt_check.precision.fp16 import convert_to_fp16, not_applicable
from onnx2trt_check.runtime import run_model
from onnx2trt_check.scope import scope_problem


def dynamic_image_model() -> onnx.ModelProto:
    return parse('<ir_version: 8, opset_import: ["" : 17]> g (float[N, 3, H, W] x) => (float[N, 3, H, W] y) { y = Relu(x) }')


# ---------------------------------------------------------------------------------- scope


@pytest.mark.parametrize("model", [classifier(), two_inputs(), qdq_relu(), dynamic_image_model()], ids=["classifier", "int-bool", "qdq", "dynamic"])
def test_tensor_models_of_numeric_and_bool_types_are_in_scope(model):
    assert scope_problem(model) is None


def test_an_ml_op_deep_in_a_subgraph_puts_the_model_out_of_scope():
    branch = helper.make_graph([helper.make_node("Normalizer", ["x"], ["b"], domain="ai.onnx.ml")], "branch", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    assert "ai.onnx.ml operators (Normalizer)" in scope_problem(model)


# ---------------------------------------------------------------------------------- shapes settled by data


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.booleans())
def test_open_dims_take_the_data_shape_and_feeds_may_vary_there(batch, height, width, stacked):
    model = dynamic_image_model()
    feed = np.ones((batch, 3, height, width), np.float32)
    arrays = {"x": np.stack([feed, feed]) if stacked else feed}
    (spec,) = resolve_input_specs(model, data_shapes={"x": feed.shape})
    assert spec.shape == (batch, 3, height, width) and spec.flexible == (0, 2, 3) and spec.settled == ("N", "H", "W")
    raw = read_source_of(arrays)
    assert [f["x"].shape for f in fit(raw, [spec])] == [feed.shape] * (2 if stacked else 1)
    other = resolve_input_specs(model, data_shapes={"x": (1, 3, height + 1, width)})
    assert fit(raw, other)[0]["x"].shape == feed.shape  # H is open: another size fits


def read_source_of(arrays):
    from onnx2trt_check.data import RawData

    return RawData("'test'", "--inputs", arrays=arrays)


def test_a_dim_the_model_fixes_is_never_settled_by_data():
    (spec,) = resolve_input_specs(classifier(batch="N"), data_shapes={"x": (2, 3, 9, 9)})
    assert spec.shape == (2, 3, 8, 8)
    with pytest.raises(InputDataError, match=r"has shape \[2, 3, 9, 9\], but the input is \[2, 3, 8, 8\]"):
        fit(read_source_of({"x": np.zeros((2, 3, 9, 9), np.float32)}), [spec])


def test_an_input_shape_override_wins_over_the_data_and_is_strict():
    (spec,) = resolve_input_specs(dynamic_image_model(), {"x": (1, 3, 4, 4)}, data_shapes={"x": (1, 3, 6, 6)})
    assert spec.shape == (1, 3, 4, 4) and spec.flexible == ()


def test_every_command_settles_dims_from_the_data(tmp_path, capsys):
    from onnx2trt_check.cli.main import main

    save(dynamic_image_model(), tmp_path / "m.onnx")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((2, 1, 3, 5, 7), np.float32))
    assert main(["optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "o.onnx"), "--inputs", str(tmp_path / "d.npz")]) == 0
    assert "on 2 feed(s)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- loaders


def test_an_endless_loader_is_drawn_to_the_cap_and_the_summary_says_so(tmp_path):
    script = tmp_path / "endless.py"
    script.write_text("import numpy as np\ndef load_data():\n    while True:\n        yield {'x': np.zeros((1, 3, 8, 8), np.float32)}\n")
    raw = read_source(str(script), "--data-loader")
    assert len(raw.feeds) == MAX_LOADER_FEEDS and raw.capped
    save(classifier(), tmp_path / "m.onnx")
    context = ModelContext(tmp_path / "m.onnx", RunOptions(feeds=FeedOptions(data_loader=str(script), raw=raw)))
    assert f"stopped at the cap of {MAX_LOADER_FEEDS} feeds" in context.notes[0]


def test_a_loader_is_closed_after_the_cap(tmp_path):
    script = tmp_path / "closing.py"
    marker = tmp_path / "closed"
    script.write_text("import numpy as np\ndef load_data():\n    try:\n        while True:\n"
                      "            yield {'x': np.zeros(2, np.float32)}\n"
                      f"    finally:\n        open({str(marker)!r}, 'w').close()\n")
    read_source(str(script), "--data-loader")
    assert marker.exists()


# ---------------------------------------------------------------------------------- fp16 artifacts


@pytest.mark.parametrize("opset", [13, 17, 19, 21])
def test_the_fp16_artifact_of_a_qdq_model_is_valid_onnx_at_its_opset(opset):
    model = qdq_model(4)
    model.opset_import[0].version = opset
    result = convert_to_fp16(model)
    onnx.checker.check_model(result.model, full_check=True)  # fp16 scales below opset 19 are invalid ONNX
    qdq_kept = {b.name for b in result.report.blocked if any(r.kind == "qdq-opset" for r in b.reasons)}
    assert bool(qdq_kept) == (opset < 19)
    data = feeds()
    expected, got = run_model(model, data), run_model(result.model, data)
    assert all(np.allclose(e[k], g[k], atol=0.05) for e, g in zip(expected, got) for k in e)


@pytest.mark.parametrize("text, reason", [
    ("(float16[1, 4] x) => (float16[1, 4] y) { y = Relu(x) }", "already takes or gives fp16 tensors ('x')"),
    ("(float[1, 4] x) => (float[1, 4] x) { }", "has no nodes"),
    ("(float[1, 4] x) => (float[1, 4] x, float[1, 4] y) { y = Relu(x) }", "graph output 'x' is a graph input"),
])
def test_models_without_an_fp16_artifact_say_why(text, reason):
    assert reason in not_applicable(parse(f'<ir_version: 8, opset_import: ["" : 17]> g {text}'))


# ---------------------------------------------------------------------------------- external data


def big_enough(monkeypatch, limit: int = 1000) -> None:
    monkeypatch.setattr(fileio, "EXTERNAL_DATA_BYTES", limit)


def test_a_large_model_is_saved_with_external_data_and_left_unchanged(tmp_path, monkeypatch):
    big_enough(monkeypatch)
    model = classifier()
    before = model.SerializeToString()
    path = fileio.save_model(model, tmp_path / "out.onnx")
    assert model.SerializeToString() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "out.onnx.data"]
    assert (tmp_path / "out.onnx").stat().st_size < 1000
    data = [{"x": np.random.default_rng(0).random((1, 3, 8, 8), np.float32)}]
    assert np.array_equal(run_model(path, data)[0]["logits"], run_model(model, data)[0]["logits"])
    with pytest.raises(OutputPathError, match="external data of .* already exists"):
        fileio.save_model(model, tmp_path / "out.onnx", force=False)


def test_a_failed_external_data_write_leaves_nothing_and_the_model_unchanged(tmp_path, monkeypatch):
    big_enough(monkeypatch)
    model = classifier()
    before = model.SerializeToString()
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the data file is in place, the model file fails
            raise OSError(28, "No space left on device")
        return original(src, dst)

    original = fileio.os.replace
    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OutputPathError, match="No space left on device"):
        fileio.save_model(model, tmp_path / "out.onnx")
    assert not list(tmp_path.iterdir()) and model.SerializeToString() == before


def test_model_artifacts_of_a_large_model_use_external_data(tmp_path, monkeypatch):
    big_enough(monkeypatch)
    save(classifier(), tmp_path / "m.onnx")
    context = ModelContext(tmp_path / "m.onnx", RunOptions(artifact_dir=tmp_path / "art"))
    path = context.artifact("copy", lambda: classifier())
    assert path.with_name(path.name + ".data").is_file()
    onnx.checker.check_model(str(path))


def test_external_data_shorter_than_the_tensor_is_refused_at_load(tmp_path):
    from onnx2trt_check.model import load_model

    onnx.save(classifier(), str(tmp_path / "m.onnx"), save_as_external_data=True, location="w.data", size_threshold=0)
    data = (tmp_path / "w.data").read_bytes()
    (tmp_path / "w.data").write_bytes(data[:-4])
    with pytest.raises(ModelError, match="shorter than declared"):
        load_model(tmp_path / "m.onnx")
    (tmp_path / "w.data").write_bytes(data)
    assert load_model(tmp_path / "m.onnx").proto.graph.initializer[0].raw_data


# ---------------------------------------------------------------------------------- output paths


def test_a_full_disk_is_refused_before_the_run(tmp_path, monkeypatch):
    from onnx2trt_check import validate

    class Full:
        f_bfree = f_bavail = 0
        f_frsize = 4096

    monkeypatch.setattr(validate.os, "statvfs", lambda path: Full())
    with pytest.raises(OutputPathError, match="the disk holding .* is full"):
        validate.output_file(tmp_path / "out.onnx", "-o")


def _file_size_limit(size: int):
    """A child process in which every write past `size` bytes fails (EFBIG), as on a full disk."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


@pytest.mark.parametrize("command", [
    ["-m", "onnx2trt_check.cli", "optimize", "m.onnx", "-o", "out.onnx"],
    ["-m", "pytest", "--model", "m.onnx", "--target", "ort", "-k", "structure", "--report-json", "out.json", "-p", "no:cacheprovider",
     "-p", "no:benchmark"],  # pytest-benchmark's .benchmarks/ in the working folder is not this test's subject
], ids=["optimize", "pytest-report"])
def test_a_write_that_fails_after_the_checks_is_one_line_exit_4_and_leaves_nothing(tmp_path, command):
    import subprocess
    import sys

    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    save(classifier(), work / "m.onnx")
    env = {**__import__("os").environ, "TMPDIR": str(temp), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, *command], cwd=work, env=env, capture_output=True, text=True, preexec_fn=_file_size_limit(2000), timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode == 4, text
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    (line,) = [line for line in text.splitlines() if "cannot write" in line]
    assert "File too large" in line and "out." in line
    assert sorted(p.name for p in work.iterdir()) == ["m.onnx"]
    assert sorted(p.name for p in temp.iterdir()) in ([], [".ses"])  # `import onnxruntime` itself writes $TMPDIR/.ses
