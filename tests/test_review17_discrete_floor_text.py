"""review17: quantize names the floor an integer output was held to as 'agreement >= 95%' (its
agreement alone judges it under int8, compare._compare); no test failed with that wording removed,
when the line read 'SQNR >= 20 dB, cosine >= 0.99, top-1 >= 95%', floors that were not applied."""

import numpy as np

from onnx2trt_check.compare import compare_output
from onnx2trt_check.config import PRECISION_PROFILES
from onnx2trt_check.quant.verify import Int8Verdict


def test_an_integer_output_is_said_to_be_held_to_its_agreement():
    floor = PRECISION_PROFILES["int8"]
    mask = [np.arange(200).reshape(1, 200) % 3]
    verdict = Int8Verdict({"mask": compare_output("mask", mask, [mask[0].copy()], floor)}, [], floors={"mask": floor})
    assert verdict.floor_text("mask") == "agreement >= 95%"
    assert verdict.figures()["mask"]["discrete"] is True
