"""review8: the training-Dropout and random-op scope checks read each graph in its own namespace.

A local function is a namespace of its own: read as one table with the main graph, a function's
Constant 't' = false made the main graph's training Dropout on 't' (Not(false)) pass as in scope,
and every target then gave a verdict on random masks. A random op inside an If of a local function
was not seen at all. Constants reached through Identity/Not/Cast, and Constant<value_float>, are
read, so an identity Dropout is not refused."""

from __future__ import annotations

import onnx
import pytest

from onnx2trt_check.scope import scope_problem

HEAD = '<ir_version: 8, opset_import: ["" : 17, "local": 1]> g (float[1,4] x) => (float[1,4] y) '
FUNCTION = '<domain: "local", opset_import: ["" : 17]> F (a) => (b) '


def _model(main: str, function: str = "b = Identity(a)") -> onnx.ModelProto:
    model = onnx.parser.parse_model(HEAD + "{" + main + "}\n" + FUNCTION + "{" + function + "}")
    onnx.checker.check_model(model)
    return model


def test_a_function_constant_of_the_same_name_does_not_hide_a_training_dropout():
    model = _model("c = Constant<value = bool {0}>() \n t = Not(c) \n z = local.F(x) \n y = Dropout(z, , t)",
                   "t = Constant<value = bool {0}>() \n b = Identity(a)")
    assert "Dropout(y) in training mode" in (scope_problem(model) or "")


def test_a_random_op_in_a_branch_of_a_local_function_is_seen():
    model = _model("y = local.F(x)", "c = Constant<value = bool {1}>() \n b = If(c) <then_branch = g1 () => (float[1,4] o)"
                   " { o = RandomNormalLike(a) }, else_branch = g2 () => (float[1,4] p) { p = Identity(a) }>")
    assert "RandomNormalLike(o)" in (scope_problem(model) or "")


def test_an_outer_constant_false_reaches_a_dropout_in_a_branch():
    model = _model("t = Constant<value = bool {0}>() \n c = Constant<value = bool {1}>() \n y = If(c) <then_branch = "
                   "g1 () => (float[1,4] a) { a = Dropout(x, , t) }, else_branch = g2 () => (float[1,4] b) { b = Identity(x) }>")
    assert scope_problem(model) is None


@pytest.mark.parametrize("main", [
    "c = Constant<value = bool {1}>() \n t = Not(c) \n y = Dropout(x, , t)",
    "c = Constant<value = int64 {0}>() \n t = Cast<to = 9>(c) \n y = Dropout(x, , t)",
    "c = Constant<value = bool {0}>() \n t = Identity(c) \n y = Dropout(x, , t)",
    "r = Constant<value_float = 0.0>() \n t = Constant<value = bool {1}>() \n y = Dropout(x, r, t)",
])
def test_a_dropout_whose_mode_folds_to_inference_stays_in_scope(main):
    assert scope_problem(_model(main)) is None


def test_a_not_of_a_constant_false_is_training():
    model = _model("c = Constant<value = bool {0}>() \n t = Not(c) \n y = Dropout(x, , t)")
    assert "in training mode" in (scope_problem(model) or "")
