"""Reduced-precision ONNX artifacts (fp16 with an fp32 fallback list) and activation statistics."""

from onnx2trt_check.precision.activations import (
    FP16_SMALLEST_NORMAL,
    TensorStats,
    collect_activation_stats,
)
from onnx2trt_check.precision.fp16 import (
    DEFAULT_OVERFLOW_MARGIN,
    DEFAULT_SENSITIVE_OPS,
    DEFAULT_UNDERFLOW_FRACTION,
    FP16_MAX,
    BlockedNode,
    BlockReason,
    Fp16Report,
    Fp16Result,
    convert_to_fp16,
    tensor_verdict,
)

__all__ = [
    "DEFAULT_OVERFLOW_MARGIN",
    "DEFAULT_SENSITIVE_OPS",
    "DEFAULT_UNDERFLOW_FRACTION",
    "FP16_MAX",
    "FP16_SMALLEST_NORMAL",
    "BlockReason",
    "BlockedNode",
    "Fp16Report",
    "Fp16Result",
    "TensorStats",
    "collect_activation_stats",
    "convert_to_fp16",
    "tensor_verdict",
]
