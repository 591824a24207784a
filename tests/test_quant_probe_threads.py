"""autotime: the probe chose 1 or ONNX Runtime's pool by timing one run, which moved with the
machine's load (a different pick from run to run on 13 of 16 models); a pool may sum in another
order, so the scores, and a choice within MIN_GAIN, moved with it. The count is now the model's
size's (probe.pool_threads)."""

import numpy as np
from onnx import helper, numpy_helper

from onnx2trt_check.quant.probe import POOL_FROM_WEIGHTS, pool_threads


def _model(weights: int):
    w = numpy_helper.from_array(np.zeros(weights, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", 1, [weights])], [helper.make_tensor_value_info("y", 1, [weights])], [w])
    return helper.make_model(graph)


def test_small_models_score_on_one_thread_and_large_ones_on_the_pool():
    assert pool_threads(_model(30_000)) == 1
    assert pool_threads(_model(POOL_FROM_WEIGHTS - 1)) == 1
    assert pool_threads(_model(POOL_FROM_WEIGHTS)) == 0
