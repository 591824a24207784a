"""Small QDQ models, one or more per Q/DQ placement rule (quant/qdq_rules.py), to hold each rule's
severity against the real builder: a rule of severity "error" must be backed by a model TensorRT
rejects. Used by tests/test_trt_builder.py and benchmarks/bench_trt_differential.py.

Each case: (name, the rule id it exercises or "" for a model no rule flags, ONNX text).
A Conv with per-channel int8 weights, a quantized input and float output is the base network.
"""

from __future__ import annotations

import onnx
import onnx.parser

HEAD = '<ir_version: 9, opset_import: ["" : 21]>'


def conv(*, x_q: str = "xq = QuantizeLinear (x, xs, xz)\n xd = DequantizeLinear (xq, xs, xz)",
         consts: str = "", w_axis: int = 0, w_scale: str = "float[4] {0.1, 0.1, 0.1, 0.1}",
         w_type: str = "int8", extra: str = "", out: str = "y = Conv (xd, wd)", outputs: str = "float[1, 4, 6, 6] y") -> str:
    """A QDQ Conv: x [1,2,8,8] quantized per tensor, weight [4,2,3,3] (an initializer, as exporters
    write it) per channel along `w_axis`."""
    kind, values = w_scale.split(" ", 1)
    w_scale_init = f"{kind} ws = {values}"
    return f"""{HEAD}
g (float[1, 2, 8, 8] x) => ({outputs})
  <{w_type}[4, 2, 3, 3] w = {{{", ".join(["1"] * 72)}}}, {w_scale_init}>
{{
    xs = Constant <value = float {{0.05}}> ()
    xz = Constant <value = int8 {{0}}> ()
    {consts}
    {x_q}
    wd = DequantizeLinear <axis = {w_axis}> (w, ws)
    {extra}
    {out}
}}"""


CASES = (
    ("valid int8 Conv", "", conv()),
    ("QDQ001 uint8 activation, zero point 128", "QDQ001-zero-point",
     conv(consts="uz = Constant <value = uint8 {128}> ()", x_q="xq = QuantizeLinear (x, xs, uz)\n xd = DequantizeLinear (xq, xs, uz)")),
    ("QDQ001 uint8 activation, zero point 0", "QDQ001-zero-point",
     conv(consts="uz = Constant <value = uint8 {0}> ()", x_q="xq = QuantizeLinear (x, xs, uz)\n xd = DequantizeLinear (xq, xs, uz)")),
    ("QDQ001 int8 activation, zero point 3", "QDQ001-zero-point",
     conv(consts="nz = Constant <value = int8 {3}> ()", x_q="xq = QuantizeLinear (x, xs, nz)\n xd = DequantizeLinear (xq, xs, nz)")),
    ("QDQ001 int16 activation", "QDQ001-zero-point",
     conv(consts="iz = Constant <value = int16 {0}> ()", x_q="xq = QuantizeLinear (x, xs, iz)\n xd = DequantizeLinear (xq, xs, iz)")),
    ("QDQ002 scale 0", "QDQ002-scale",
     conv(consts="zs = Constant <value = float {0.0}> ()", x_q="xq = QuantizeLinear (x, zs, xz)\n xd = DequantizeLinear (xq, zs, xz)")),
    ("QDQ002 scale negative", "QDQ002-scale",
     conv(consts="ns = Constant <value = float {-0.05}> ()", x_q="xq = QuantizeLinear (x, ns, xz)\n xd = DequantizeLinear (xq, ns, xz)")),
    ("QDQ002 scale inf", "QDQ002-scale",
     conv(consts="fs = Constant <value = float {inf}> ()", x_q="xq = QuantizeLinear (x, fs, xz)\n xd = DequantizeLinear (xq, fs, xz)")),
    ("QDQ002 scale computed from constants", "QDQ002-scale",
     conv(consts="two = Constant <value = float {2.0}> ()\n cs = Mul (xs, two)", x_q="xq = QuantizeLinear (x, cs, xz)\n xd = DequantizeLinear (xq, cs, xz)")),
    ("QDQ002 scale reduced from constants", "QDQ002-scale",
     conv(consts="c3 = Constant <value = float[3] {0.05, 0.02, 0.04}> ()\n rs = ReduceMax <keepdims = 0> (c3)",
          x_q="xq = QuantizeLinear (x, rs, xz)\n xd = DequantizeLinear (xq, rs, xz)")),
    ("QDQ002 scale computed from the data", "QDQ002-scale",
     conv(consts="ds = ReduceMax <keepdims = 0> (x)", x_q="xq = QuantizeLinear (x, ds, xz)\n xd = DequantizeLinear (xq, ds, xz)")),
    ("QDQ003 Conv weight scale along axis 1", "QDQ003-weight-axis",
     conv(w_axis=1, w_scale="float[2] {0.1, 0.2}")),
    ("QDQ004 int32 bias DQ", "QDQ004-int32-bias",
     conv(consts="b = Constant <value = int32[4] {1, 2, 3, 4}> ()\n bs = Constant <value = float {0.005}> ()",
          extra="bd = DequantizeLinear (b, bs)", out="y = Conv (xd, wd, bd)")),
    ("QDQ010 Q read by a Cast", "QDQ010-dangling-q",
     conv(extra="qc = Cast <to = 1> (xq)", out="y = Conv (xd, wd)\n    z = Identity (qc)", outputs="float[1, 4, 6, 6] y, float[1, 2, 8, 8] z")),
    ("QDQ010 Q as a graph output", "QDQ010-dangling-q",
     conv(out="y = Conv (xd, wd)\n    z = Identity (xq)", outputs="float[1, 4, 6, 6] y, int8[1, 2, 8, 8] z")),
    ("int4 Conv weight stored unpacked (int32_data; structure::trt_ops flags it)", "",
     conv(w_type="int4")),
)


def model(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)
