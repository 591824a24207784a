"""Every command-line and ini option of `pytest --model`, one function per check family.

Declared apart from the families because pytest asks for options in every run of every project
where the package is installed, with or without `--model`: this module imports nothing but the
standard library, so a run that checks no model does not pay for onnx, onnxruntime or numpy. Each
family reads its own options (its `read_options`) once `--model` is given.

Name lists in help texts and choices (targets, transforms, calibrators) are written out here rather
than imported from their registries, which are heavy; tests/test_plugin_options.py holds them equal.
"""

from __future__ import annotations

import argparse

TARGET_NAMES = ("ort", "ort-fp16", "cpu-fp16-emu", "trt-fp32", "trt-fp16", "trt-int8", "trt-best", "ort-int8")
TRANSFORM_NAMES = ("simplify", "optimize", "fuse_repconv", "bn_across_maxpool", "fold_conv_bn", "fold_gemm_bn", "fuse_input_normalization",
                   "fold_bn_conv", "fold_bn_gemm", "remove_output_sigmoid", "output_tail")
BN_CONV_MODES = ("exact", "plain", "skip_padded")
CALIBRATION_METHODS = ("auto", "max", "percentile", "entropy", "mse")
RELU6_MODES = ("skip", "swap_to_relu")
BISECT_FEEDS = 4
TRT_FLAVOURS = ("auto", "tensorrt", "tensorrt-rtx")
INI_TOLERANCES = {"atol": "onnx2trt_atol", "rtol": "onnx2trt_rtol", "min_cosine": "onnx2trt_min_cosine", "min_sqnr_db": "onnx2trt_min_sqnr_db"}
INI_BASELINE_DIR = "onnx2trt_baseline_dir"
UPDATE_FLAG = "--baseline-update"


# Every option's dest starts with it, so a project's own option of the same name (a conftest.py with
# --model or --seed: common in ML test suites) never shares a value with ours.
DEST_PREFIX = "onnx2trt_"
# A flag the project's conftest.py already defines is ours under this prefix instead: --onnx2trt-seed.
FLAG_PREFIX = "--onnx2trt-"
_ADDED = "_onnx2trt_check_options"  # the parser attribute that marks (and lists) our options as added


def value(config, name: str, *default):
    """The value of our option `name` (its dest without the prefix); `default` when the option is
    not there (as config.getoption: without one, an unknown name is an error, not None)."""
    return config.getoption(DEST_PREFIX + name, *default)


def typed(config, flags) -> list[str]:
    """The flags of `flags` given on the command line itself, not by addopts (ini) or PYTEST_ADDOPTS:
    an option refused because its family is off is refused only there, since a default a project sets
    in addopts for the runs that turn its family on could not be taken back by one that does not."""
    args = [str(a) for a in config.invocation_params.args]
    ours = {flag: renamed_flags(config).get(flag, flag) for flag in flags}
    return [flag for flag, spelled in ours.items() if any(a == spelled or a.startswith(spelled + "=") for a in args)]


def renamed_flags(config) -> dict[str, str]:
    """{project's flag: ours}: the flags a conftest.py took before we added ours."""
    return dict(getattr(getattr(config, "_parser", None), _ADDED, None) or {})


def add_options(parser) -> None:
    """Our options, once per parser; a flag the project already has is ours with FLAG_PREFIX."""
    if hasattr(parser, _ADDED):
        return
    group = _OurGroup(parser.getgroup("onnx2trt_check", "onnx2trt_check: validate ONNX models for deployment"))
    for names, attrs in _declared():
        group.addoption(*names, **attrs)
    setattr(parser, _ADDED, group.renamed)
    for key, ini in INI_TOLERANCES.items():
        parser.addini(ini, f"onnx2trt_check: {key} for every output", default=None)
    parser.addini("onnx2trt_output_tolerances", "onnx2trt_check: per-output tolerances, OUT:key=value,...", type="linelist", default=[])
    parser.addini(INI_BASELINE_DIR, "onnx2trt_check: folder of the versioned baselines", default=None)


def keep_values_out_of_paths(namespace, args: list[str]) -> None:
    """pytest finds the initial conftest.py files from the paths of its first parse, before our
    options exist (they are added after those files: plugin.py): there `--model x.onnx` reads as
    the option --model and the path x.onnx. The values of our flags are taken out of its paths,
    so the same conftest.py files load as when the options were known."""
    flags = {flag for names, attrs in _declared() if attrs.get("action", "store") in ("store", "append")
             for name in names for flag in (name, FLAG_PREFIX + name.lstrip("-"))}
    paths = list(getattr(namespace, "file_or_dir", None) or [])
    for flag, following in zip(args, args[1:]):
        if flag in flags and following in paths:
            paths.remove(following)
    namespace.file_or_dir = paths


def _declared() -> list[tuple[tuple[str, ...], dict]]:
    """Every option as (flags, addoption attributes), in the order of the help text."""
    recorder = _Recorder()
    for add in (_core, _transforms, _baselines, _precision, _int8, _bisect, _reference_and_task):
        add(recorder)
    return recorder.options


class _Recorder:
    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict]] = []

    def addoption(self, *names, **attrs) -> None:
        self.options.append((names, attrs))


def non_empty(text: str) -> str:
    """An option's text, refused when empty: `--inputs "$DATA"` with DATA unset would otherwise
    read as the option left out (or as the current folder), and the run pass without it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; pass a value (is a shell variable unset?)")
    return text


class _OurGroup:
    """The option group: every dest prefixed (DEST_PREFIX), every text-valued option (no type, no
    choices, not a flag) read through non_empty, and a flag the project's conftest.py defines
    taken with FLAG_PREFIX (recorded in `renamed`)."""

    def __init__(self, group) -> None:
        self._group = group
        self.renamed: dict[str, str] = {}

    def addoption(self, *names, **attrs) -> None:
        if attrs.get("action", "store") in ("store", "append") and "type" not in attrs and "choices" not in attrs:
            attrs["type"] = non_empty
        dest = attrs.get("dest", names[0].lstrip("-").replace("-", "_"))
        if attrs.get("action", "store") in ("store", "append") and "choices" not in attrs:
            attrs.setdefault("metavar", dest.upper())  # the help says --seed=SEED, not its prefixed dest
        attrs["dest"] = DEST_PREFIX + dest
        try:
            self._group.addoption(*names, **attrs)
        except (ValueError, argparse.ArgumentError):  # "conflicting option string: --seed": the project's conftest.py has it
            ours = tuple(FLAG_PREFIX + name.lstrip("-") for name in names)
            self._group.addoption(*ours, **attrs)
            self.renamed.update(zip(names, ours))


def _core(group) -> None:
    group.addoption("--model", action="append", default=[], metavar="PATH", help="ONNX model to check (repeatable); a folder means every .onnx in it")
    group.addoption("--inputs", metavar="NPZ", help="input data: keys are input names; an extra leading axis gives one feed per slice")
    group.addoption("--data-loader", metavar="FILE.py[:FUNC]", help="script whose FUNC (default load_data) yields feed dicts")
    group.addoption("--input-shape", action="append", default=[], metavar="NAME:1x3x224x224", help="shape for an input with dynamic dims")
    group.addoption("--input-range", action="append", default=[], metavar="[NAME:]LOW,HIGH", help="value range of generated inputs. Defaults to 0,1 (0,255 for a uint8 input)")
    group.addoption("--seed", type=int, default=0, help="seed of generated inputs. Defaults to 0")
    group.addoption("--num-feeds", type=int, default=4, help="number of generated feeds. Defaults to 4")
    group.addoption("--target", action="append", default=[], metavar="NAME", help=f"target to compare with the reference (repeatable): {', '.join(TARGET_NAMES)}. Defaults to every target that can run here")
    group.addoption("--atol", type=float, help="absolute tolerance. Defaults to 1e-4")
    group.addoption("--rtol", type=float, help="relative tolerance. Defaults to 1e-4")
    group.addoption("--min-cosine", type=float, help="floor on cosine similarity per output (off by default)")
    group.addoption("--min-sqnr", type=float, dest="min_sqnr_db", help="floor on SQNR in dB per output (off by default)")
    group.addoption("--output-tolerance", action="append", default=[], metavar="OUT:key=value,...", help="tolerance of one output, e.g. logits:atol=1e-3")
    group.addoption("--report-json", metavar="PATH", help="write the results as a schema-versioned JSON report")
    group.addoption("--artifact-dir", metavar="DIR", help="keep derived models (fp16/int8 artifacts, transformed models) in a new folder under DIR. Defaults to a temporary folder")


def _transforms(group) -> None:
    group.addoption("--transform", action="append", default=[], dest="transform", metavar="NAME",
                    help=f"graph transform to check (repeatable): {', '.join(TRANSFORM_NAMES)}. Defaults to all")
    group.addoption("--mean", dest="transform_mean", metavar="M1,M2,...",
                    help="per-channel mean of preprocessing done outside the model, folded by fuse_input_normalization")
    group.addoption("--std", dest="transform_std", metavar="S1,S2,...",
                    help="per-channel std of preprocessing done outside the model (see --mean)")
    group.addoption("--threshold", action="append", default=[], dest="transform_threshold", metavar="[OUTPUT:]P",
                    help="declare OUTPUT a score compared with probability P (repeatable; P alone: the only output of a single-output "
                         "model). remove_output_sigmoid strips only declared outputs and checks decisions at their thresholds")
    group.addoption("--bn-conv-mode", dest="bn_conv_mode", default="exact", metavar="MODE",
                    help=f"fold_bn_conv mode: {', '.join(BN_CONV_MODES)}. Defaults to exact")


def _baselines(group) -> None:
    group.addoption("--latency", action="store_true", help="measure the latency of every selected target (off by default)")
    group.addoption("--latency-rounds", type=int, default=100, metavar="N", help="timed rounds per target. Defaults to 100")
    group.addoption("--latency-warmup", type=int, default=10, metavar="N", help="untimed warm-up calls per target. Defaults to 10")
    group.addoption("--latency-max-ratio", type=float, default=1.05, metavar="R", help="median slowdown that counts as a latency regression (when also significant). Defaults to 1.05")
    group.addoption("--baseline-dir", metavar="DIR", help="compare with the baselines in DIR (or set baseline_dir in [tool.onnx2trt_check], ini onnx2trt_baseline_dir)")
    group.addoption(UPDATE_FLAG, action="store_true", help="rewrite the baselines with what this run measured")


def _precision(group) -> None:
    group.addoption("--fp16-calibration-data", metavar="NPZ|FILE.py[:FUNC]", help="feeds (a .npz or a data-loader script) that decide the fp16 artifact's fp32 fallback list. Defaults to the check inputs")
    group.addoption("--fp16-block", action="append", default=[], metavar="NODE", help="node kept in fp32 in the fp16 artifact (repeatable)")
    group.addoption("--fp16-no-fallback", action="store_true", help="build the fp16 artifact without the data-driven fallback and the sensitive-op list")
    group.addoption("--engine-cache", metavar="DIR", help="reuse TensorRT engines from DIR (keyed by model, options, TensorRT version, GPU). Defaults to no cache")
    group.addoption("--trt-builds", type=int, default=None, metavar="N", help="build each TensorRT target N times (N >= 2, engine cache off) and report the spread of the errors")
    group.addoption("--trt-flags", action="store_true", help="TensorRT 10: build fp16/int8/best from the fp32 model with builder flags (int8 calibrated) instead of the ONNX artifacts")
    group.addoption("--trt-flavour", choices=TRT_FLAVOURS, help="which TensorRT parses, builds and runs when both are installed (or set ONNX2TRT_CHECK_TRT). Defaults to auto: TensorRT, else TensorRT-RTX")


def _int8(group) -> None:
    group.addoption("--calibration-data", metavar="NPZ|FILE.py[:FUNC]", help="int8 calibration inputs: a .npz like --inputs, or a data-loader script like --data-loader; makes the ort-int8 target available")
    group.addoption("--calibration-method", choices=CALIBRATION_METHODS, help="int8 activation range method; auto picks per tensor the best of the others by output SQNR on held-out calibration feeds. Defaults to auto")
    group.addoption("--percentile", type=float, dest="calibration_percentile", help="percentile of |x| for --calibration-method percentile. Defaults to 99.99")
    group.addoption("--per-tensor", action="store_true", help="int8 weights per tensor instead of per output channel")
    group.addoption("--cle", action="store_true", help="cross-layer equalization before int8 quantization")
    group.addoption("--cle-relu6", choices=RELU6_MODES, help="ReLU6 between equalized convs: skip the pair, or swap it to Relu (changes the function). Defaults to skip")
    group.addoption("--bias-correction", action="store_true", help="int8 bias correction: each layer's mean output error cancelled in its bias, layer by layer, kept only where it lowers the layer's error on held-out calibration feeds")
    group.addoption("--exclude", action="append", default=[], dest="quant_exclude", metavar="NODE_OR_REGEX", help="node name or regex left in float by int8 quantization (repeatable); an unnamed node is OpType(first output)")
    group.addoption("--calibration-sweep", action="store_true", help="one accuracy item per calibrator (max, percentile 99.99/99.999, entropy, mse)")


def _bisect(group) -> None:
    group.addoption("--bisect", action="store_true", help="for each failed target accuracy item, compare the target's ONNX artifact with the reference layer by layer and name the first divergent node")
    group.addoption("--bisect-plot", metavar="DIR", help="also write an HTML plot of the per-layer error per failed item into DIR (implies --bisect); an existing file is kept and the new one gets a numeric suffix")
    group.addoption("--bisect-min-sqnr", type=float, metavar="DB", help="SQNR floor per tensor of the layerwise comparison. Defaults to 20")
    group.addoption("--bisect-feeds", type=int, metavar="N", help=f"feeds the layerwise comparison uses (the first N). Defaults to {BISECT_FEEDS}")


def _reference_and_task(group) -> None:
    group.addoption("--reference-script", metavar="FILE.py[:FUNC]", help="the source framework's outputs as the reference: FUNC (default reference) maps one feed dict to the outputs; adds export::parity (the ONNX file against them)")
    group.addoption("--reference-model", metavar="ORIGINAL.onnx", help="an original model as the reference of a derived (pruned, distilled, re-exported) one; adds derived::parity and derived::size")
    group.addoption("--labels", metavar="FILE.npy", help="ground truth, one label per feed row: top-1/top-5 task accuracy of the reference and every target (task::metric[...])")
    group.addoption("--metric", metavar="FILE.py[:FUNC]", help="FUNC(outputs, labels) (default metric) returns named task figures, higher is better (e.g. mAP)")
    group.addoption("--max-metric-drop", type=float, metavar="D", help="fail a task item whose figure is more than D below the reference's (in the figure's unit; off by default)")
