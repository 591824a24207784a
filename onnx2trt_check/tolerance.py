"""When a target output counts as equal to the reference: the `Tolerance` rules and the profile of
each precision a target runs in. A leaf module: compare judges by these, config layers the user's
settings over them, and part_floors asks how wide the profiles' own element-wise rules are."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """When a target output counts as equal to the reference.

    An element passes when |target - ref| <= atol + rtol * |ref| (numpy.isclose's rule); atol or
    rtol None disables the element-wise test. `min_cosine` and `min_sqnr_db` are optional floors on
    the whole output; `min_top1` a floor on top-1 agreement of class-score
    outputs and of integer/bool outputs (the share of equal elements). The fp32
    defaults are atol 1e-4 and rtol 1e-4: ORT's optimized kernels reorder float sums, which moves
    results by a few ulps of the largest partial sum, far below 1e-4 for well-scaled networks."""

    atol: float | None = 1e-4
    rtol: float | None = 1e-4
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    min_top1: float | None = None

    def merged(self, **overrides) -> Tolerance:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


# Tolerance profiles by the precision a target runs in; user settings apply on top of them.
# fp32: reordered float sums only (Tolerance's defaults). fp16: about 3 significant digits per
# tensor, so element-wise rules are loose and the whole-output floors carry the verdict; its atol
# 5e-2: near-zero logits of the sample models move by up to 0.027 in fp16 (0.3% of the largest logit,
# SQNR 52-58 dB), which rtol cannot cover. int8: element-wise rules are meaningless at 1/127
# resolution; SQNR 20 dB as Polygraphy's quality metrics suggest, cosine, and top-1 agreement on
# class scores and on integer/bool outputs (labels, masks).
PRECISION_PROFILES = {
    "fp32": Tolerance(),
    "fp16": Tolerance(atol=5e-2, rtol=1e-2, min_cosine=0.999, min_sqnr_db=30.0, min_top1=0.99),
    "int8": Tolerance(atol=None, rtol=None, min_cosine=0.99, min_sqnr_db=20.0, min_top1=0.95),
}
