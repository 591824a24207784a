"""`python -m onnx2trt_check.cli`: the same as `onnx2trt-check`."""

import sys

from .main import main

sys.exit(main())
