"""What input data must hold beyond fitting the model's inputs (data.fit checks those): calibration
data finite values and more than one value; test data finite values unless the model reads NaN/inf
as data. Apart from data.py, which reads and fits every kind of input data."""

from __future__ import annotations

import numpy as np

from .errors import InputDataError
from .protos import all_nodes

# The options whose data sets ranges (int8 activation ranges, the fp16 fallback's activation peaks).
CALIBRATING_OPTIONS = ("--calibration-data", "--fp16-calibration-data")
# Ops that read NaN/inf as data (a missing value, as scikit-learn's imputers and trees take it): a
# model holding one may be checked on data holding them.
NONFINITE_READERS = frozenset({"IsNaN", "IsInf", "Imputer", "TreeEnsemble", "TreeEnsembleClassifier", "TreeEnsembleRegressor"})


def check_values(option: str, feeds: list[dict[str, np.ndarray]], source: str, proto=None) -> None:
    """Calibration data: finite and not constant. Test data (--inputs, --data-loader): finite unless
    `proto`, the model, reads NaN/inf as data, or holds infinities (no NaN) its outputs absorb (an
    additive attention mask's -inf, which a Softmax turns to 0 on every engine alike). NaN/inf test
    data otherwise only spread into the outputs (the reference fails) or vanish in a Max/Relu/Clip
    differently on each target (an ORT Relu keeps NaN, a fused one may not), and a verdict on them
    judged fewer values than the user gave: `optimize`, `quantize` and `bisect` passed on such data
    with exit 0."""
    if option in CALIBRATING_OPTIONS:
        check_finite(feeds, source)
        check_not_constant(feeds, source)
    elif proto is None or not any(node.op_type in NONFINITE_READERS for node in all_nodes(proto)):
        _check_test_data_finite(feeds, source, proto)


def _check_test_data_finite(feeds: list[dict[str, np.ndarray]], source: str, proto) -> None:
    bad = {name: [(index, count) for index, feed in enumerate(feeds) if (count := _nonfinite(feed[name]))] for name in (feeds[0] if feeds else ())}
    name = next((name for name, found in bad.items() if found), None)
    if name is None or _infinities_absorbed(proto, feeds):
        return
    raise InputDataError(f"{source}: input '{name}' holds {sum(count for _, count in bad[name])} NaN/inf value(s) in {len(bad[name])} "
                         f"feed(s) (first: feed #{bad[name][0][0]}); the model has no op that reads them as data (IsNaN, IsInf, "
                         "Imputer, a tree ensemble) and they reach its outputs, so the checks would judge fewer values than given. "
                         "Clean the data (a division by zero in preprocessing?)")


def _infinities_absorbed(proto, feeds: list[dict[str, np.ndarray]]) -> bool:
    """Whether the data holds infinities but no NaN, and the model's outputs on the feeds that hold
    them are finite (ONNX Runtime, once: only data with infinities pays for the run). A model ONNX
    Runtime cannot run is not judged here: the reference item reports that."""
    if proto is None or any(np.isnan(a).any() for feed in feeds for a in feed.values() if a.dtype.kind == "f"):
        return False
    from .runtime import run_model

    with_inf = [feed for feed in feeds if any(_nonfinite(a) for a in feed.values())]
    try:
        outputs = run_model(proto, with_inf)
    except Exception:  # noqa: BLE001 - any failure of the run is the reference item's to report
        return True
    return all(np.isfinite(a).all() for out in outputs for a in out.values() if isinstance(a, np.ndarray) and a.dtype.kind == "f")


def _nonfinite(array: np.ndarray) -> int:
    return int(np.size(array) - np.count_nonzero(np.isfinite(array))) if array.dtype.kind == "f" else 0


def check_not_constant(feeds: list[dict[str, np.ndarray]], source: str) -> None:
    """Calibration sets ranges from the data's values. Data in which every input holds one value
    (a loader returning blank buffers, an all-zero file) gives ranges real data overflows, and the
    held-out feeds that judge the result hold the same value, so the check passes: a classifier
    calibrated on zeros measured 52 dB on its held-out zeros and 2.4 dB on real digits. Refused.
    One constant input among varying ones (an attention mask of ones) is data, and passes."""
    filled = [name for name, array in feeds[0].items() if array.size] if feeds else []
    if not filled:
        return
    for name in filled:
        first = feeds[0][name].flat[0]
        if any(np.any(feed[name] != first) for feed in feeds):  # NaN != NaN: NaN data is not "constant"
            return
    values = ", ".join(f"'{name}' = {feeds[0][name].flat[0].item()!r}" for name in filled)
    raise InputDataError(f"{source}: every value of every input is the same in all {len(feeds)} feed(s) ({values}); what is calibrated "
                         "on a constant does not hold for real data, and a check on held-out feeds would see the same constant. "
                         "Give data like what the model sees in deployment")


def check_finite(feeds: list[dict[str, np.ndarray]], source: str) -> None:
    """NaN or inf in calibration data: where such a feed fell decided the outcome (among the feeds
    the statistics read: "calibration produced NaN/Inf activations"; among the held-out feeds the
    automatic calibration and the verification judge by: ignored without a word). Refused, named."""
    for index, feed in enumerate(feeds):
        for name, array in feed.items():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                count = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
                raise InputDataError(f"{source}: feed #{index} input '{name}' holds {count} NaN/inf value(s); ranges are not calibrated on "
                                     "them, and where such a feed falls decides what happens. Clean the data (a division by zero in "
                                     "preprocessing?)")
