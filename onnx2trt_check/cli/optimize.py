"""`onnx2trt-check optimize IN.onnx -o OUT.onnx`: apply the graph transforms, verify every step that
changed the model on input data, and write the result only when every step passed.

Exit codes: 0 written and verified, 1 a step failed or the model ignores its inputs on the feeds, so
nothing could be verified (nothing written), 4 misuse.
"""

from __future__ import annotations

import argparse

from .common import add_input_options, input_kwargs, no_extra


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "optimize", help="apply the graph transforms, verify each step on input data, write the optimized model")
    parser.add_argument("model", help="ONNX model to optimize (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the optimized model")
    parser.add_argument("--passes", metavar="A,B,...",
                        help="transforms to apply, applied in the documented registry order whatever order they are "
                             "listed in. Defaults to all but output_tail (see --output-tail)")
    parser.add_argument("--mean", metavar="M1,M2,...",
                        help="per-channel mean of preprocessing done outside the model: the result reads raw values")
    parser.add_argument("--std", metavar="S1,S2,...", help="per-channel std of that preprocessing (see --mean)")
    parser.add_argument("--threshold", action="append", default=[], metavar="[OUTPUT:]P",
                        help="declare OUTPUT a score compared with probability P (repeatable; P alone: the only output of a "
                             "single-output model): its Sigmoid is removed and P mapped to a logit threshold. Only declared "
                             "outputs lose their Sigmoid")
    parser.add_argument("--bn-conv-mode", default="exact", help="fold_bn_conv mode: exact, plain, skip_padded. Defaults to exact")
    parser.add_argument("--output-tail", action="store_true",
                        help="also move trailing Transpose/Reshape/Resize of the outputs into post-processing (output_tail): "
                             "the outputs change layout and OUT.recipe.json says how to restore them")
    add_input_options(parser)
    parser.add_argument("--force", action="store_true", help="overwrite OUT.onnx (and its recipe OUT.recipe.json) if they exist")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from ..api import optimize

    no_extra(extra)
    result = optimize(args.model, output=args.output, force=args.force, passes=args.passes, mean=args.mean, std=args.std,
                      thresholds=args.threshold, bn_conv_mode=args.bn_conv_mode, output_tail=args.output_tail, **input_kwargs(args))
    print(f"optimize '{args.model}': {', '.join(result.settings.selected())} on {result.feeds} feed(s) ({result.feeds_source})"
          + (f"; {result.other_shapes}" if result.other_shapes else ""))
    for note in result.input_ranges:
        print(f"  note: {note}" + ("; they are the model's own inputs, before the folded --mean/--std" if args.mean else ""))
    if result.one_feed:
        from ..liveness import ONE_FEED_NOTE

        print(f"  note: {ONE_FEED_NOTE}")
    for line in step_lines(result.pipeline):
        print(line)
    if not result.pipeline.passed:
        print(f"'{args.output}' NOT written: step '{result.pipeline.failed_step}' failed verification "
              f"(leave it out with --passes to keep the steps before it)")
        return 1
    if result.unverifiable:
        print(f"'{args.output}' NOT written: nothing is verified: {result.unverifiable}; give data the model responds to (--inputs) "
              "or check the model itself (onnx2trt-check check)")
        return 1
    for line in threshold_lines(result.pipeline, result.settings) + recipe_lines(result.recipe, result.recipe_written):
        print(line)
    print(f"verified: {result.nodes_before} -> {len(result.model.graph.node)} nodes; wrote '{result.written}'")
    return 0


def step_lines(result, *, details: int = 10) -> list[str]:
    """Per step: what changed (node counts, rewrites) and its verification, or why nothing did."""
    from ..transforms.run import border_error_lines, failing_output_lines, skip_reason

    lines = []
    for step in result.steps:
        if step.error:
            lines.append(f"  {step.name:<25} FAILED: {step.error}")
        elif not step.modified:
            lines.append(f"  {step.name:<25} no change ({skip_reason(step)})")
        else:
            verdict = "ok" if step.passed else "FAILED"
            lines.append(f"  {step.name:<25} {verdict}, {step.nodes_before} -> {step.nodes_after} nodes, "
                         f"{len(step.report.matches)} rewrite(s); {step.verification.summary}")
            lines += [] if step.passed else failing_output_lines(step.verification.figures) + border_error_lines(step.report)
            lines += [f"      {', '.join(m.nodes)}: {m.detail}" for m in step.report.matches[:details]]
            if len(step.report.matches) > details:
                lines.append(f"      (+{len(step.report.matches) - details} more)")
            lines += _left_lines(step.report.skips, details)
    return lines


def _left_lines(skips, details: int) -> list[str]:
    """The candidates a step that changed the model left alone, and why: "2 rewrite(s)" alone
    reads as if every candidate was rewritten."""
    lines = [f"      left alone: {', '.join(s.nodes)}: {s.reason}" for s in skips[:details]]
    return lines + ([f"      (+{len(skips) - details} more left alone)"] if len(skips) > details else [])


def recipe_lines(recipe: dict | None, written) -> list[str]:
    """The post-processing that restores each output whose tail output_tail moved out of the graph."""
    from ..transforms.tail_recipe import describe

    if recipe is None:
        return []
    lines = []
    for name, entry in recipe["outputs"].items():
        exactness = "bit-exact" if entry["exact"] else "within float rounding (linear Resize)"
        lines.append(f"output '{name}' is now {entry['new_shape']} (was {entry['old_shape']}); post-processing restores it, {exactness}:")
        lines += [f"  {index}. {describe(step)}" for index, step in enumerate(entry["steps"], 1)]
    lines += [f"  left in the graph: {left['reason']}" for left in recipe["left_in_graph"] if "box decode" in left["reason"]]
    return lines + [f"recipe written to '{written}' (tail_recipe.apply_recipe applies it in numpy)"]


def threshold_lines(result, settings) -> list[str]:
    """The logit thresholds that replace probability thresholds on outputs whose Sigmoid was removed."""
    step = next((s for s in result.steps if s.name == "remove_output_sigmoid" and s.modified), None)
    if step is None:
        return []
    lines = []
    for output, mapping in step.report.figures["logit_thresholds"].items():
        lines.append(f"output '{output}' now carries logits: compare it with the logit thresholds")
        lines += [f"  probability > {t}  ->  logit > {logit:.9g}" for t, logit in mapping.items()]
    return lines
