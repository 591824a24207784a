"""Writing a model with its weights in external data: fileio.save_model against onnx.save_model.

Models over 2 GiB cannot be serialized as one protobuf, so every writer saves them with external
data. onnx.save_model(save_as_external_data=True) converts the proto it is given, so a writer that
must leave its model unchanged (an artifact built from the loaded model, a result the caller keeps)
has to copy it first; fileio.save_model moves each tensor's bytes out and back instead. Each method
runs in a fresh process on a model of --megabytes of float32 weights (fileio's threshold lowered so
the external-data path runs); the time and the peak resident memory of the process are printed,
with the ratios.

Usage: python benchmarks/bench_save_model.py [--megabytes 512]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

CHILD = r"""
import resource, sys, time
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
from onnx2trt_check import fileio

megabytes, method, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
n = megabytes * 2**20 // 4 // 1024
weight = numpy_helper.from_array(np.ones((1024, n), np.float32), "W")
graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], [weight])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
del weight
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if method == "fileio.save_model":
    fileio.EXTERNAL_DATA_BYTES = 1024
    fileio.save_model(model, f"{folder}/a.onnx")
else:  # the model must stay as it is: convert a copy
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, f"{folder}/b.onnx", save_as_external_data=True, location="b.onnx.data")
seconds = time.perf_counter() - started
print(seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def measure(method: str, megabytes: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench_save_model-") as folder:
        done = subprocess.run([sys.executable, "-c", CHILD, str(megabytes), method, folder], check=True, capture_output=True, text=True)
    seconds, extra_mb = (float(v) for v in done.stdout.split())
    return seconds, extra_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512)
    args = parser.parse_args()
    ours, theirs = measure("fileio.save_model", args.megabytes), measure("onnx.save_model of a copy", args.megabytes)
    print(f"{args.megabytes} MB of weights, external data:")
    print(f"  fileio.save_model          {ours[0]:6.2f} s, peak memory +{ours[1]:7.0f} MB")
    print(f"  onnx.save_model of a copy  {theirs[0]:6.2f} s, peak memory +{theirs[1]:7.0f} MB")
    print(f"  ratio (ours / onnx's): time {ours[0] / theirs[0]:.2f}, extra memory {ours[1] / max(theirs[1], 1):.2f}")


if __name__ == "__main__":
    main()
