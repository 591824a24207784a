"""zoo16: a failed trt::build row read "0.00 s, 0 bytes, 4 layers", as if the build had made an empty
engine. It now says no engine was made (and how many layers were parsed)."""

import json

import pytest
from qdq_rule_models import CASES, model

from onnx2trt_check.trt.flavour import TrtUnavailable, select


def test_a_failed_build_row_says_no_engine_was_made(pytester):
    try:
        select()
    except TrtUnavailable as error:
        pytest.skip(str(error))
    text = next(text for label, _, text in CASES if label.startswith("int4 Conv weight stored unpacked"))  # the parser refuses it
    pytester.path.joinpath("m.onnx").write_bytes(model(text).SerializeToString())
    result = pytester.runpytest("--model=m.onnx", "-k", "trt and int8", "-p", "no:cacheprovider", "--report-json=r.json")
    assert result.ret == 1
    build = next(iter(json.loads(pytester.path.joinpath("r.json").read_text())["models"].values()))["families"]["trt[int8]"]["checks"]["build"]
    assert build["outcome"] == "failed" and "no engine (0 layers parsed)" in build["figures"].get("summary", ""), build
    result.stdout.fnmatch_lines(["*trt?int8?*FAILED*no engine (0 layers parsed)*"])
    assert "0 bytes" not in result.stdout.str()
