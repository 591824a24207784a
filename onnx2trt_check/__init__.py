"""onnx2trt_check: verify every step of the ONNX -> TensorRT deployment path.

The public API (api.py; keyword-only options, results as dataclasses):

    import onnx2trt_check as o2t
    o2t.check("model.onnx", pytest_args=["--target", "ort"])        # -> CheckResult
    o2t.optimize("model.onnx", output="model.opt.onnx")              # -> OptimizeResult
    o2t.quantize("model.onnx", calibration_data="calib.npz")         # -> QuantizeResult
    o2t.bisect("model.onnx", target="cpu-fp16-emu")                  # -> BisectOutcome

Imported on first use, so `import onnx2trt_check` (and the pytest plugin) stays light.
"""

__version__ = "0.1.0"
__all__ = ["check", "optimize", "quantize", "bisect"]


def __getattr__(name: str):
    if name in __all__:
        from .leftovers import quiet_onnxruntime

        quiet_onnxruntime()  # before api imports ONNX Runtime: its telemetry leaves files (leftovers.py)
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'onnx2trt_check' has no attribute '{name}'")
