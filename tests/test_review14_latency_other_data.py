"""review14: the baseline's data fingerprint gated only the accuracy block. A latency gate (`-k latency`,
a dedicated runner) that lost --inputs timed the generated feed of batch 1 against a baseline timed on
the data's batch of 64 and reported a 50x "improvement": a slower model passed. The latency block was
measured on the file's data too; a run on other data fails it, as the accuracy item does."""

from __future__ import annotations

import numpy as np
from tiny_models import classifier, save


def test_a_latency_gate_on_other_data_fails(pytester):
    save(classifier(), pytester.path / "m.onnx")
    np.savez(pytester.path / "big.npz", x=np.random.default_rng(0).random((2, 64, 3, 8, 8), dtype=np.float32))
    gate = ("-p", "no:cacheprovider", "--model", "m.onnx", "--target", "ort", "--baseline-dir", "bl", "--latency", "-k", "latency")
    assert pytester.runpytest_subprocess(*gate, "--inputs", "big.npz", "--baseline-update").ret == 0
    same = pytester.runpytest_subprocess(*gate, "--inputs", "big.npz", "--latency-max-ratio", "50")  # timing noise of a 0.05 ms model
    assert same.ret == 0, same.stdout.str()
    lost = pytester.runpytest_subprocess(*gate)
    assert lost.ret == 1, lost.stdout.str()
    lost.stdout.fnmatch_lines(["*was measured on other input data*"])
