"""A Dropout in training mode draws a fresh mask every run: such a model is out of scope, named
with the fix (export in eval mode). A Dropout that is an identity stays in scope."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from onnx2trt_check.scope import scope_problem

HEAD = '<ir_version: 8, opset_import: ["" : 17]> g (float[1,4] x, bool t_in) => (float[1,4] y) '


def _model(body: str, *, initializers=()) -> onnx.ModelProto:
    model = onnx.parser.parse_model(HEAD + "{" + body + "}")
    model.graph.initializer.extend(initializers)
    return model


@pytest.mark.parametrize("body", [
    "r = Constant<value = float {0.1}>() \n t = Constant<value = bool {1}>() \n y = Dropout(x, r, t)",
    "t = Constant<value = bool {1}>() \n y = Dropout(x, , t)",  # default ratio 0.5
    "r = Constant<value = float {0.1}>() \n y = Dropout(x, r, t_in)",  # the feed decides: may be random
    "t = Constant<value = bool {1}>() \n c = Constant<value = bool {1}>() \n"
    " y = If(c) <then_branch = g1 () => (float[1,4] a) { a = Dropout(x, , t) },"
    " else_branch = g2 () => (float[1,4] b) { b = Identity(x) }>",
])
def test_a_dropout_in_training_mode_is_out_of_scope(body):
    assert "in training mode" in (scope_problem(_model(body)) or "")


def test_a_training_mode_initializer_is_read_too():
    model = _model("r = Constant<value = float {0.2}>() \n y = Dropout(x, r, t)",
                   initializers=[helper.make_tensor("t", onnx.TensorProto.BOOL, [], [True])])
    assert "Dropout(y) in training mode" in (scope_problem(model) or "")


@pytest.mark.parametrize("body", [
    "y = Dropout(x)",  # inference mode
    "r = Constant<value = float {0.1}>() \n y = Dropout(x, r)",
    "t = Constant<value = bool {0}>() \n y = Dropout(x, , t)",
    "r = Constant<value = float {0.0}>() \n t = Constant<value = bool {1}>() \n y = Dropout(x, r, t)",  # keeps all
])
def test_a_dropout_that_is_an_identity_stays_in_scope(body):
    assert scope_problem(_model(body)) is None
