"""The differential figures: the op table against the real parser and builder, and each Q/DQ rule
against the builder.

1. Every ONNX backend node test of the installed onnx (about 1,900 single-op models with their
   inputs; trt/differential.py) through the op table (checked as the installed flavour) and
   through the flavour's parser + builder: agreement, and every disagreement with its reason.
   Cases whose build needed a GPU (none here) are counted apart.
2. Every model of tests/qdq_rule_models.py: the Q/DQ rules' errors against the builder's verdict.

Usage: python benchmarks/bench_trt_differential.py [--op OP]   (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from qdq_rule_models import CASES, model  # noqa: E402

from onnx2trt_check.quant.qdq_rules import validate_qdq  # noqa: E402
from onnx2trt_check.trt import differential, flavour, isolated  # noqa: E402
from onnx2trt_check.trt.build import build_engine  # noqa: E402


def qdq_lines(chosen: flavour.Flavour) -> list[str]:
    lines, agreed = [], 0
    with tempfile.TemporaryDirectory() as folder:
        for name, _rule, text in CASES:
            path = Path(folder) / "q.onnx"
            onnx.save(model(text), path)
            findings = validate_qdq(model(text))
            errors = sorted({f.rule for f in findings if f.severity == "error"})
            warnings = sorted({f.rule for f in findings if f.severity == "warning"})
            try:
                verdict = "builds" if isolated.call(build_engine, str(path), chosen).ok else "rejects"
            except isolated.TrtCrashed:
                verdict = "crashes"
            agrees = (not errors) == (verdict == "builds")
            agreed += agrees
            lines.append(f"  {'agree   ' if agrees else 'DISAGREE'} {name:62} rules: errors {errors or '-'}, warnings {warnings or '-'}; {chosen.name} {verdict}")
    head = f"Q/DQ rules (quant/qdq_rules.py) vs {chosen.label} builder on {len(CASES)} models (tests/qdq_rule_models.py): {agreed} agree"
    return [head, *lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--op", help="only this op's node tests")
    args = parser.parse_args()
    chosen = flavour.select()
    started = time.perf_counter()
    verdicts = differential.compare(differential.node_test_cases(args.op), chosen)
    for line in differential.summary(verdicts, chosen):
        print(line)
    print(f"  ({time.perf_counter() - started:.0f} s)")
    for line in qdq_lines(chosen):
        print(line)


if __name__ == "__main__":
    main()
