"""What every target is: the ONNX artifact it deploys, how it runs, what it is compared with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..quant.float_counterpart import float_outputs, has_qdq
from ..transforms.verify import half_compute_dtype


class Target:
    """A place a model runs. Subclasses set the names and `run`; the defaults deploy the model file
    itself and compare with the model's ORT reference.

    `engine` labels every figure the target produces (onnxruntime, tensorrt), so the summary never
    shows an ONNX Runtime number as a TensorRT one. `precision` picks the tolerance profile."""

    name = ""
    engine = ""
    description = ""
    precision = "fp32"

    def unavailable_reason(self) -> str | None:
        return None

    def artifact(self, ctx) -> Path:
        """The ONNX file this target deploys. Defaults to the model itself."""
        return ctx.path

    def feeds(self, ctx) -> list:
        """The feeds this target is judged on. Defaults to the run's feeds (ctx.feeds)."""
        return ctx.feeds

    def reference(self, ctx):
        """The outputs this target is compared with, on `feeds(ctx)`. Defaults to the model's ORT
        reference run."""
        return ctx.reference

    def tolerance_precision(self, ctx) -> str:
        """The tolerance profile this target's outputs are judged by: its precision, or int8 for a
        model that holds Q/DQ nodes, which every target runs as written (ORT, the fp16 artifacts,
        TensorRT): a float difference of a few ulps before a QuantizeLinear (reordered sums, fused
        ops) flips a value by one quantum, which fp32 tolerances read as a failure."""
        if has_qdq(ctx.loaded.proto):  # a scan of the node list
            return "int8"
        if self.precision == "fp32" and half_compute_dtype(ctx.loaded.proto) is not None:
            return "fp16"  # a model computing in fp16 inside: ORT's fused kernels re-round its fp16 values
        return self.precision

    def output_precisions(self, ctx) -> dict[str, str]:
        """The tolerance profile per output: tolerance_precision's, except that on a model holding
        Q/DQ an output no Q/DQ node reaches is computed in float, where no quantum can flip, and is
        judged by this target's own precision (zoo13: a float output losing 29 dB to fp16 passed
        cpu-fp16-emu at int8's 20 dB because a Q/DQ pair sat on another output's branch)."""
        profile = self.tolerance_precision(ctx)
        profiles = {output.name: profile for output in ctx.loaded.proto.graph.output}
        if profile == "int8" and self.precision != "int8" and has_qdq(ctx.loaded.proto):
            own = "fp16" if self.precision == "fp32" and half_compute_dtype(ctx.loaded.proto) is not None else self.precision
            profiles.update(dict.fromkeys(float_outputs(ctx.loaded.proto), own))
        return profiles

    def figures(self, ctx) -> dict:
        """Facts about how this target ran the model (e.g. TensorRT's build path), merged into the
        accuracy item's figures. Defaults to none."""
        return {}

    def run(self, model_path: str | os.PathLike, feeds: list[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError(f"target {self.name} does not define run()")  # every registered subclass does
