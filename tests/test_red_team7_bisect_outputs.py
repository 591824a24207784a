"""Red team 7: `onnx2trt-check bisect --plot P --json J` wrote the plot during the search and the
JSON after it, one after the other: a failure or a Ctrl-C between them (a full disk, a CI timeout)
left a new plot beside the old JSON of another run, with --force. They are now one set
(fileio.renamed_together): both renamed into place at the end, or neither; no hidden file is left."""

import os

import bisect_models as bm
from tiny_models import save

from onnx2trt_check.cli import bisect as bisect_command
from onnx2trt_check.cli.main import main


def test_a_json_write_that_fails_leaves_the_old_plot_and_json(tmp_path, monkeypatch):
    model = save(bm.chain_model(6), tmp_path / "m.onnx")
    (tmp_path / "out").mkdir()
    plot, report = tmp_path / "out" / "p.html", tmp_path / "r.json"
    plot.write_text("old plot")
    report.write_text("{}")

    def interrupted(path, document):
        raise KeyboardInterrupt  # a Ctrl-C after the search, as the JSON is written

    monkeypatch.setattr(bisect_command, "_write_json", interrupted)
    assert main(["bisect", str(model), "--target", "ort-fp16", "--plot", str(plot), "--json", str(report), "--force"]) == 130
    assert plot.read_text() == "old plot" and report.read_text() == "{}"
    assert sorted(os.listdir(tmp_path / "out")) == ["p.html"] and sorted(os.listdir(tmp_path)) == ["m.onnx", "out", "r.json"]


def test_both_are_written_under_their_own_names(tmp_path, capsys):
    model = save(bm.chain_model(6), tmp_path / "m.onnx")
    plot, report = tmp_path / "p.html", tmp_path / "r.json"
    assert main(["bisect", str(model), "--target", "ort-fp16", "--plot", str(plot), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"wrote '{plot}'" in out and f"wrote '{report}'" in out and ".staged" not in out
    assert plot.read_text().startswith("<!DOCTYPE html>") and report.read_text().startswith("{")
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "p.html", "r.json"]


def test_the_plot_is_still_refused_over_the_model(tmp_path, capsys):
    model = save(bm.chain_model(6), tmp_path / "m.onnx")
    before = model.read_bytes()
    assert main(["bisect", str(model), "--target", "ort-fp16", "--plot", str(model), "--force"]) == 4
    assert model.read_bytes() == before
