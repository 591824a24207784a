"""Every graph transform, in the order the pipeline applies them.

The order, and why:

1. simplify: onnxsim's constant folding and shape inference turn computed constants (a mean built
   by Constant -> Reshape, a weight behind a Cast) into initializers and drop no-op nodes, so the
   pattern matchers below see constants and adjacent nodes.
2. optimize: onnxoptimizer's eliminations and fusions (Pad into Conv, Add into Conv bias, ...) on
   the simplified graph.
   Both run with their BatchNormalization fusion off: BN folding is left to our own transforms,
   which report each fold and keep RepConv branches (Conv+BN, Conv1x1+BN, BN) intact for step 3.
3. fuse_repconv: a RepVGG/RepConv block must still have its three branches to merge them into one
   Conv; folding its BNs one by one first would break the pattern.
4. bn_across_maxpool: a BN next to a MaxPool (positive scales) moves across it to the Conv or
   Gemm/MatMul that absorbs it, before the folds below look for their pairs.
5. fold_conv_bn: Conv -> BN folds into the preceding Conv exactly (no border effect), so a BN between
   two Convs goes backwards here rather than forwards in step 8.
6. fold_gemm_bn: Gemm/MatMul -> BN likewise, into the preceding layer's weight and bias.
7. fuse_input_normalization: before fold_bn_conv, so a Sub/Div/BN chain on the input folds as one
   affine map with at most one border correction per Conv, and after fold_conv_bn, because the
   correction Add it may insert after a padded Conv would hide a following BN from fold_conv_bn.
8. fold_bn_conv: the BNs left (after a Relu, an Add, ...) fold forwards into the next Conv.
9. fold_bn_gemm: a BN before a Gemm/MatMul (directly or through a Flatten/Reshape) folds forwards.
10. remove_output_sigmoid: the first step that changes output values (logits instead of
   probabilities); it is verified by decision agreement, every step before it by value equality
   against the same outputs.
11. output_tail: last. It changes output shapes (a trailing Transpose/Reshape/Resize becomes a
   post-processing recipe), so it is verified by the recipe restoring the old outputs. After
   remove_output_sigmoid, so a Sigmoid followed by a tail is kept (remove_output_sigmoid only
   strips a Sigmoid that is an output's producer) and the recipe restores the outputs exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import onnxoptimizer

from onnx2trt_check.errors import ConfigError
from onnx2trt_check.transforms.bn_across_maxpool import bn_across_maxpool
from onnx2trt_check.transforms.fold_bn_conv import fold_bn_conv
from onnx2trt_check.transforms.fold_bn_gemm import fold_bn_gemm
from onnx2trt_check.transforms.fold_conv_bn import fold_conv_bn
from onnx2trt_check.transforms.fold_gemm_bn import fold_gemm_bn
from onnx2trt_check.transforms.fuse_input_normalization import fuse_input_normalization
from onnx2trt_check.transforms.fuse_repconv import fuse_repconv
from onnx2trt_check.transforms.output_tail import output_tail, verify_output_tails
from onnx2trt_check.transforms.remove_output_sigmoid import (
    remove_output_sigmoid,
    verify_decisions,
)
from onnx2trt_check.transforms.simplify import optimize, simplify


class RegisteredTransform(NamedTuple):
    """A transform by name, with the keyword options it runs with by default.

    `verifier`, when set, replaces value equivalence in the pipeline (same signature, `run` keyword included, as
    `verify.verify_values`).
    """

    name: str
    function: Callable
    defaults: Mapping[str, object] = MappingProxyType({})
    verifier: Callable | None = None


# Without fuse_bn_into_conv (BN folds are ours, see above) and eliminate_duplicate_initializer:
# deduplicating weights changes no result and no TensorRT fusion, and it is the one remaining pass
# that needs every weight's bytes, which makes onnxoptimizer copy the whole model four times.
_OPTIMIZER_PASSES = tuple(
    p for p in onnxoptimizer.get_fuse_and_elimination_passes() if p not in ("fuse_bn_into_conv", "eliminate_duplicate_initializer")
)

TRANSFORMS: tuple[RegisteredTransform, ...] = (
    RegisteredTransform("simplify", simplify, MappingProxyType({"fuse_bn": False})),
    RegisteredTransform("optimize", optimize, MappingProxyType({"passes": _OPTIMIZER_PASSES})),
    RegisteredTransform("fuse_repconv", fuse_repconv),
    RegisteredTransform("bn_across_maxpool", bn_across_maxpool),
    RegisteredTransform("fold_conv_bn", fold_conv_bn),
    RegisteredTransform("fold_gemm_bn", fold_gemm_bn),
    RegisteredTransform("fuse_input_normalization", fuse_input_normalization),
    RegisteredTransform("fold_bn_conv", fold_bn_conv, MappingProxyType({"mode": "exact"})),
    RegisteredTransform("fold_bn_gemm", fold_bn_gemm),
    RegisteredTransform("remove_output_sigmoid", remove_output_sigmoid, verifier=verify_decisions),
    RegisteredTransform("output_tail", output_tail, verifier=verify_output_tails),
)


def transform_names() -> tuple[str, ...]:
    return tuple(entry.name for entry in TRANSFORMS)


def get_transform(name: str) -> RegisteredTransform:
    """The registered transform called `name`."""
    for entry in TRANSFORMS:
        if entry.name == name:
            return entry
    raise ConfigError(f"unknown transform {name!r}; valid names: {', '.join(transform_names())}")
