"""Red team 19: a model whose external data file is a symlink loop (w.data -> w.data), given to
`optimize`/`quantize`/`qdq optimize` with -o over an existing file and --force, crashed with a
RuntimeError traceback (Path.resolve in the check that the output is not the model's weights),
before the model's own load could say what is wrong with its data. It is now that one line."""

import numpy as np
import onnx
import pytest
from tiny_models import classifier

from onnx2trt_check.cli.main import main


@pytest.mark.parametrize("command", [["optimize"], ["quantize", "--calibration-data", "c.npz"]])
def test_a_looping_data_file_is_one_line(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    onnx.save(classifier(batch=1), tmp_path / "m" / "model.onnx", save_as_external_data=True, location="w.data", size_threshold=0)
    (tmp_path / "m" / "w.data").unlink()
    (tmp_path / "m" / "w.data").symlink_to("w.data")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((8, 1, 3, 8, 8), dtype=np.float32))
    (tmp_path / "o.onnx").write_bytes(b"old")
    assert main([command[0], "m/model.onnx", "-o", "o.onnx", "--force", *command[1:]]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err and "keeps its data in 'w.data', a symbolic link" in err
    assert (tmp_path / "o.onnx").read_bytes() == b"old"
