"""Generators of planted-fault models for the bisect tests and benchmark.

`chain_model(depth)` repeats the block Conv(1x1) -> MatMul -> Relu -> Add, named `n{i}_{op}` with
output `t{i}`. Weights are near-identity (I + 0.1 noise) and the input is positive, so the values
stay O(1) through 200 layers. With `residual=True` every Add adds the block's Conv output (a small
residual graph: the Conv output has two consumers); otherwise it adds a constant bias. Every fault is planted in a copy built from the
same seed, so the reference and the faulty model differ only at the planted node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2trt_check.runtime import run_model

CHANNELS, SIZE = 4, 4
BLOCK = ("Conv", "MatMul", "Relu", "Add")
FP16_MAX = 65504.0


def feeds(count: int = 2, *, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(0.5, 1.5, (1, CHANNELS, SIZE, SIZE)).astype(np.float32)} for _ in range(count)]


def node_name(index: int) -> str:
    return f"n{index}_{BLOCK[index % 4].lower()}"


def chain_model(depth: int, *, seed: int = 0, residual: bool = False, scales: dict[int, float] | None = None,
                weight_edits: dict[int, float] | None = None, qdq: dict[int, float] | None = None) -> onnx.ModelProto:
    """A chain of `depth` nodes. `weight_edits` multiplies node i's weight (and bias) by a factor;
    `scales` is the same but marked as a range change (used for fp16 overflows); `qdq` maps a node
    index to the scale of a QuantizeLinear/DequantizeLinear pair inserted on its activation input."""
    rng = np.random.default_rng(seed)
    factors = {**(scales or {}), **(weight_edits or {})}
    nodes, inits = [], []
    x = "x"
    for i in range(depth):
        op, name, out = BLOCK[i % 4], node_name(i), f"t{i}"
        src = _quantized(x, i, qdq, nodes, inits) if qdq and i in qdq else x
        # The residual Add adds the block's Conv output (whose weights are halved): r + c ~ 2c ~ x.
        skip = f"t{i - 3}" if residual and i >= 3 else None
        nodes.append(_layer(op, name, src, out, rng, factors.get(i, 1.0), inits, residual, skip))
        x = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _layer(op, name, src, out, rng, factor, inits, residual, skip):
    if op == "Conv":
        weight = (np.eye(CHANNELS) + 0.1 * rng.normal(size=(CHANNELS, CHANNELS))) * (0.5 if residual else 1.0)
        bias = 0.05 * rng.normal(size=CHANNELS)
        inits += [_init(name + ".w", factor * weight[:, :, None, None]), _init(name + ".b", factor * bias)]
        return helper.make_node("Conv", [src, name + ".w", name + ".b"], [out], name=name)
    if op == "MatMul":
        inits.append(_init(name + ".w", factor * (np.eye(SIZE) + 0.1 * rng.normal(size=(SIZE, SIZE)))))
        return helper.make_node("MatMul", [src, name + ".w"], [out], name=name)
    if op == "Relu":
        return helper.make_node("Relu", [src], [out], name=name)
    if skip is not None:
        return helper.make_node("Add", [src, skip], [out], name=name)
    inits.append(_init(name + ".b", factor * 0.05 * rng.normal(size=(1, CHANNELS, 1, 1))))
    return helper.make_node("Add", [src, name + ".b"], [out], name=name)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _quantized(x: str, i: int, qdq: dict[int, float], nodes: list, inits: list) -> str:
    scale, zero = f"q{i}.scale", f"q{i}.zero"
    inits += [_init(scale, np.float32(qdq[i])), numpy_helper.from_array(np.zeros((), np.int8), zero)]
    nodes.append(helper.make_node("QuantizeLinear", [x, scale, zero], [f"{x}_q{i}"], name=f"q{i}"))
    nodes.append(helper.make_node("DequantizeLinear", [f"{x}_q{i}", scale, zero], [f"{x}_dq{i}"], name=f"dq{i}"))
    return f"{x}_dq{i}"


def weighted_nodes(depth: int, *, residual: bool = False) -> list[int]:
    """Indices of the nodes that own a weight (where a wrong-weights fault can be planted)."""
    return [i for i in range(depth) if BLOCK[i % 4] in ("Conv", "MatMul") or (BLOCK[i % 4] == "Add" and not (residual and i >= 3))]


def wrong_weights(depth: int, fault: int, *, seed: int = 0, residual: bool = False) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(reference, target): the target's node `fault` has its weights scaled by -0.5 (a wrong
    export, a sign flip in a fused BatchNorm, ...); a bias Add's small bias by 20."""
    reference = chain_model(depth, seed=seed, residual=residual)
    factor = 20.0 if BLOCK[fault % 4] == "Add" else -0.5
    return reference, chain_model(depth, seed=seed, residual=residual, weight_edits={fault: factor})


def overflow_positions(depth: int) -> list[int]:
    """Conv nodes followed by a MatMul: where the fp16 overflow can be planted and undone."""
    return [i for i in range(depth - 1) if BLOCK[i % 4] == "Conv"]


def fp16_overflow(depth: int, fault: int, *, seed: int = 0, residual: bool = False, data=None) -> onnx.ModelProto:
    """A model whose Conv `fault` outputs values above 65504 (about 1.5x the fp16 maximum) and whose
    next MatMul scales them back, so that in fp32 only one tensor is out of fp16 range."""
    if fault not in overflow_positions(depth):
        raise ValueError(f"node {fault} is not a Conv followed by a MatMul")
    plain = chain_model(depth, seed=seed, residual=residual)
    peak = _peak(plain, f"t{fault}", data or feeds())
    s = 1.5 * FP16_MAX / peak
    return chain_model(depth, seed=seed, residual=residual, scales={fault: s, fault + 1: 1.0 / s})


def qdq_model(depth: int, *, bad: int | None = None, factor: float = 0.02, seed: int = 0, residual: bool = False,
              data=None, exclude=()) -> onnx.ModelProto:
    """The chain with a Q/DQ pair (int8, max calibration) on the activation input of every Conv and
    MatMul not named in `exclude`; node `bad`'s scale is multiplied by `factor` (a bad calibration:
    saturation)."""
    plain = chain_model(depth, seed=seed, residual=residual)
    quantized = [i for i in range(depth) if BLOCK[i % 4] in ("Conv", "MatMul") and node_name(i) not in set(exclude)]
    peaks = _peaks(plain, [("x" if i == 0 else f"t{i - 1}") for i in quantized], data or feeds())
    scales = {i: peak / 127.0 for i, peak in zip(quantized, peaks)}
    if bad in scales:
        scales[bad] *= factor
    return chain_model(depth, seed=seed, residual=residual, qdq=scales)


def _peak(model: onnx.ModelProto, tensor: str, data) -> float:
    return _peaks(model, [tensor], data)[0]


def _peaks(model: onnx.ModelProto, tensors: list[str], data) -> list[float]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in dict.fromkeys(tensors) if t != "x")
    results = run_model(probe, data)
    values = [{**r, **feed} for r, feed in zip(results, data)]
    return [max(float(np.max(np.abs(v[t]))) for v in values) for t in tensors]


def save(model: onnx.ModelProto, path) -> str:
    """The chain with its output shape declared, as a file the CLI loads."""
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(model.graph.output[0].name, TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE]))
    onnx.save(model, str(path))
    return str(path)
