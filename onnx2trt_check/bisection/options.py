"""The `bisect` options' checks, made before the search runs (and before the model is loaded):
numbers in range, and no option that would change nothing for the chosen target and mode."""

from __future__ import annotations

from pathlib import Path

from .. import validate
from ..errors import ConfigError
from ..fileio import checked_output
from ..quant.idle_options import NO_CALIBRATION_DATA, OWN_QDQ, idle_quantizer_options


def check_numbers(*, max_feeds, min_sqnr_db, atol, rtol) -> None:
    validate.integer(max_feeds, "--max-feeds", low=1)
    validate.number(min_sqnr_db, "--min-sqnr", example="20")
    validate.number(atol, "--atol", low=0.0, example="1e-4")
    validate.number(rtol, "--rtol", low=0.0, example="1e-4")


def refuse_idle_options(mode: str, target, given: dict[str, object]) -> None:
    """Misuse: an option that would change nothing here (e.g. --fp16-no-fallback on target ort,
    --calibration-data on an fp16 target, --rank outside --sensitivity). Ignored, it would let a
    user believe the search reproduced what they asked for. `given`: option -> its value when set
    (--calibration-method's is the method), else a false value. The quantizer's own options follow
    quant.idle_options, the rule `quantize` and `pytest --model` apply."""
    applies = {"fp16": target.precision == "fp16", "int8": target.precision == "int8",
               "lowering": mode in ("sensitivity", "reduce"), "rank": mode == "sensitivity"}
    idle = [option for option, is_set in given.items() if is_set and not applies[IDLE_WHEN[option]]]
    if idle:
        where = {"fp16": f"target '{target.name}' runs in {target.precision}: fp16 options build the fp16 artifact of ort-fp16 and cpu-fp16-emu",
                 "int8": f"target '{target.name}' runs in {target.precision}: int8 options build the int8 artifact of ort-int8",
                 "lowering": "--lowering lowers for --sensitivity and --reduce", "rank": "--rank ranks for --sensitivity"}
        reasons = "; ".join(dict.fromkeys(where[IDLE_WHEN[o]] for o in idle))
        raise ConfigError(f"{', '.join(idle)} would change nothing here ({reasons}); leave out what does not apply")
    if target.precision == "int8":
        not_quantizing = None if given.get("--calibration-data") else NO_CALIBRATION_DATA
        if problem := idle_quantizer_options(given, not_quantizing=not_quantizing):
            raise ConfigError(problem)
        unused = [option for option in SEARCH_LOWERING_IGNORES if given.get(option)]
        if mode == "sensitivity" and unused:  # its int8_quantizer lowering: method, percentile, granularity, exclude
            raise ConfigError(f"{', '.join(unused)} would change nothing here (--sensitivity compares keep sets on the int8_quantizer "
                              "lowering, which quantizes without equalization or bias correction); leave out what does not apply")


def refuse_quantizer_options_on_qdq(model, given: dict[str, object]) -> None:
    """A model with its own Q/DQ nodes is the ort-int8 artifact as it is (its calibration data only
    judges it): the quantizer's options would change nothing."""
    from ..quant.float_counterpart import has_qdq

    if has_qdq(model) and (problem := idle_quantizer_options(given, not_quantizing=OWN_QDQ)):
        raise ConfigError(problem)


# Options of the ort-int8 artifact the --sensitivity search's lowering does not apply (refuse_idle_options).
SEARCH_LOWERING_IGNORES = ("--cle", "--cle-relu6", "--bias-correction")
# Which condition each option needs to do anything (refuse_idle_options).
IDLE_WHEN = {"--fp16-block": "fp16", "--fp16-no-fallback": "fp16", "--calibration-data": "int8", "--calibration-method": "int8",
             "--percentile": "int8", "--per-tensor": "int8", "--cle": "int8", "--cle-relu6": "int8", "--bias-correction": "int8",
             "--exclude": "int8", "--lowering": "lowering", "--rank": "rank"}


def refuse_existing(model, plot, output_dir, *, force: bool, inputs: dict[str, object], json=None) -> None:
    """Every output checked before the search runs: the plot file, and for --reduce a folder whose
    model.onnx and inputs.npz are new or may be replaced; never the input model or its weights,
    never an input file (`inputs`: option -> path) nor another output (the CLI's `json`)."""
    reduced = [("-o", Path(output_dir) / name) for name in ("model.onnx", "inputs.npz")] if output_dir is not None else []
    validate.distinct_outputs([("--json", json), ("--plot", plot), *reduced], inputs)
    if plot is not None:
        checked_output(model, plot, force=force, option="--plot")
    if output_dir is not None:
        validate.output_folder(output_dir, "-o")
        for name in ("model.onnx", "inputs.npz"):
            checked_output(model, Path(output_dir) / name, force=force, option="-o")


def input_files(inputs, calibration_data, labels, metric) -> dict[str, object]:
    """The files `bisect` reads besides the model (option -> path), which no output may replace."""
    return {"--inputs": inputs, "--calibration-data": calibration_data, "--labels": labels, "--metric": metric}
