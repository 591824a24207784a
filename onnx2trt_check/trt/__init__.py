"""TensorRT support: which flavour (flavour.py), its ONNX parser's verdict (parse.py), engine builds
without a GPU (build.py). Nothing here imports TensorRT at import time."""
