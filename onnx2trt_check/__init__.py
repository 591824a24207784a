"""onnx2trt_check: verify every step of the ONNX -> TensorRT deployment path."""

__version__ = "0.1.0"
