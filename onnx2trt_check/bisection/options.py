"""The `bisect` options' checks, made before the search runs (and before the model is loaded):
numbers in range, and no option that would change nothing for the chosen target and mode."""

from __future__ import annotations

from .. import validate
from ..errors import ConfigError


def check_numbers(*, max_feeds, min_sqnr_db, atol, rtol) -> None:
    validate.integer(max_feeds, "--max-feeds", low=1)
    validate.number(min_sqnr_db, "--min-sqnr", example="20")
    validate.number(atol, "--atol", low=0.0, example="1e-4")
    validate.number(rtol, "--rtol", low=0.0, example="1e-4")


def refuse_idle_options(mode: str, target, given: dict[str, bool]) -> None:
    """Misuse: an option that would change nothing here (e.g. --fp16-no-fallback on target ort,
    --calibration-data on an fp16 target, --rank outside --sensitivity). Ignored, it would let a
    user believe the search reproduced what they asked for. `given`: option -> whether it was set."""
    applies = {"fp16": target.precision == "fp16", "int8": target.precision == "int8",
               "lowering": mode in ("sensitivity", "reduce"), "rank": mode == "sensitivity"}
    idle = [option for option, is_set in given.items() if is_set and not applies[IDLE_WHEN[option]]]
    if idle:
        where = {"fp16": f"target '{target.name}' runs in {target.precision}: fp16 options build the fp16 artifact of ort-fp16 and cpu-fp16-emu",
                 "int8": f"target '{target.name}' runs in {target.precision}: int8 options build the int8 artifact of ort-int8",
                 "lowering": "--lowering lowers for --sensitivity and --reduce", "rank": "--rank ranks for --sensitivity"}
        reasons = "; ".join(dict.fromkeys(where[IDLE_WHEN[o]] for o in idle))
        raise ConfigError(f"{', '.join(idle)} would change nothing here ({reasons}); leave out what does not apply")


# Which condition each option needs to do anything (refuse_idle_options).
IDLE_WHEN = {"--fp16-block": "fp16", "--fp16-no-fallback": "fp16", "--calibration-data": "int8", "--calibration-method": "int8",
             "--percentile": "int8", "--per-tensor": "int8", "--cle": "int8", "--cle-relu6": "int8", "--bias-correction": "int8",
             "--exclude": "int8", "--lowering": "lowering", "--rank": "rank"}
