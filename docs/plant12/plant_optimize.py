"""Faults planted between a transform and its verification (plant12): the registry's fold_conv_bn is
wrapped so its result is wrong, then onnx2trt_check.optimize verifies and writes (or refuses)."""
import dataclasses, json, sys, tempfile
from pathlib import Path
import numpy as np, onnx
from onnx import numpy_helper, helper
import onnx2trt_check
from onnx2trt_check.transforms import registry


def wrap(fault):
    entries = list(registry.TRANSFORMS)
    i = next(k for k, e in enumerate(entries) if e.name == "fold_conv_bn")
    inner = entries[i].function

    def planted(model, **kw):
        result = inner(model, **kw)
        return dataclasses.replace(result, model=fault(result.model)) if result.modified else result
    entries[i] = entries[i]._replace(function=planted)
    registry.TRANSFORMS = tuple(entries)


def eps_bias(model):  # a fold that used eps 1e-3 instead of the model's: biases of folded Convs off
    m = onnx.ModelProto(); m.CopyFrom(model)
    convs = [n for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    t = next(t for t in m.graph.initializer if t.name == convs[0].input[2])
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(1.001) + np.float32(1e-3), t.name))
    return m


def batch_baked(model):  # the rewritten graph reshapes the output to the feed shape [1,5,32,32] (batch 1 baked)
    m = onnx.ModelProto(); m.CopyFrom(model)
    out = m.graph.output[0].name
    for n in m.graph.node:
        n.output[:] = [out + "__pre" if o == out else o for o in n.output]
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 5, 32, 32], np.int64), "plant_b1"))
    m.graph.node.append(helper.make_node("Reshape", [out + "__pre", "plant_b1"], [out]))
    return m


case, model, data = sys.argv[1], sys.argv[2], sys.argv[3]
wrap({"eps_bias": eps_bias, "batch_baked": batch_baked}[case])
out = Path(tempfile.mkdtemp()) / "opt.onnx"
r = onnx2trt_check.optimize(model, output=out, inputs=data, passes=["fold_conv_bn"])
print(json.dumps({"case": case, "passed": r.passed, "written": bool(r.written)}))
print(r.summary() if hasattr(r, "summary") else r)
