"""The name lists the light options module writes out are the registries' own."""

from onnx2trt_check.bisection import modes
from onnx2trt_check.cli import bisect as bisect_command
from onnx2trt_check.cli import quantize as quantize_command
from onnx2trt_check.pytest_plugin import options
from onnx2trt_check.quant.quantize import CALIBRATION_METHODS as METHODS
from onnx2trt_check.targets import target_names
from onnx2trt_check.transforms import registry
from onnx2trt_check.transforms.fold_bn_conv import MODES


def test_target_names_are_the_registry():
    assert options.TARGET_NAMES == target_names()


def test_transform_names_are_the_registry():
    assert options.TRANSFORM_NAMES == registry.transform_names()


def test_modes_and_methods_are_the_libraries():
    assert options.BN_CONV_MODES == MODES
    assert set(options.CALIBRATION_METHODS) == set(METHODS)
    assert set(quantize_command.CALIBRATION_METHODS) == set(METHODS)
    assert set(bisect_command.CALIBRATION_METHODS) == set(METHODS)
    assert bisect_command.LOWERINGS == tuple(modes.LOWERINGS)
