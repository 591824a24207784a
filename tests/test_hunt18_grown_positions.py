"""hunt18: the grown probe repeated each feed's last position, so a position_ids input grew as
0..15, 15, 15, ... and never read past the data's length. A derived BERT whose position table was cut
to the data's 16 rows (Gather(table, position_ids), as transformers exports it with position_ids
an input) passed derived::parity saying 'also agrees at larger free dimensions (seq 16 -> 24)',
though it fails on any 17-token input the original runs. An integer input counting up by one at
the end of each row (a position counter; padding rows may stay constant) now goes on counting."""

from __future__ import annotations

import numpy as np
import onnx.parser
from hypothesis import given
from hypothesis import strategies as st

from onnx2trt_check import api
from onnx2trt_check.shape_probe import other_size, size_above

BODY = """
<ir_version: 8, opset_import: ["": 18]>
g (int64[N,S] position_ids, int64[N,S] mask) => (float[N,S,4] y) <float[{rows},4] table = {{{values}}}> {{
  e = Gather<axis = 0>(table, position_ids)
  f = Cast<to = 1>(mask)
  u = Unsqueeze(f, axes)
  y = Mul(e, u)
}}"""


def _model(rows):
    values = ", ".join(str(float(v)) for v in np.sin(np.arange(rows * 4)).round(3))
    text = BODY.format(rows=rows, values=values).replace("<float", "<int64[1] axes = {2}, float", 1)
    return onnx.parser.parse_model(text)


def test_a_position_table_cut_to_the_data_length_fails_the_grown_probe(tmp_path):
    onnx.save(_model(64), tmp_path / "original.onnx")
    onnx.save(_model(16), tmp_path / "derived.onnx")
    positions = np.tile(np.arange(16), (4, 1, 1))  # 4 feeds of batch 1
    np.savez(tmp_path / "data.npz", position_ids=positions, mask=np.ones_like(positions))
    result = api.check(str(tmp_path / "derived.onnx"), pytest_args=[f"--reference-model={tmp_path / 'original.onnx'}", f"--inputs={tmp_path / 'data.npz'}",
                                                                     "-k", "derived and parity", "-p", "no:cacheprovider", "-q"])
    parity = next(iter(result.report["models"].values()))["families"]["derived"]["checks"]["parity"]
    assert parity["outcome"] == "failed", parity.get("figures")


@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=6), left=st.booleans())
def test_grown_positions_go_on_counting_and_padding_stays(lengths, left):
    """Left-padded positions (0 x pad, then 0, 1, ...) and right-padded ones (0, 1, ..., then the last
    repeated) go on from their last position; the mask still grows by its last position."""
    size = 12
    mask = np.stack([(np.arange(size) < n) for n in lengths]).astype(np.int64)
    mask = mask[:, ::-1] if left else mask
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    positions = positions if left else np.tile(np.arange(size), (len(lengths), 1))
    feeds = [{"position_ids": p[None], "mask": m[None]} for p, m in zip(positions, mask)]
    probe = other_size(_model(64), feeds, grow=True)
    new = size_above(size)
    for made, p, m in zip(probe.feeds, positions, mask):
        grown, grown_mask = made["position_ids"][0], made["mask"][0]
        assert grown.shape == grown_mask.shape == (new,) and np.array_equal(grown[:size], p) and np.array_equal(grown_mask[:size], m)
        assert np.all(grown_mask[size:] == m[-1])
        counting = p[-1] - p[-2] == 1 if size >= 2 else False
        expected = p[-1] + np.arange(1, new - size + 1) if counting else np.full(new - size, p[-1])
        if any(np.all(np.diff(q[-3:]) == 1) for q in positions):  # the input counts somewhere: each counting row goes on
            assert np.array_equal(grown[size:], expected), (p, grown)


def test_token_ids_and_masks_still_repeat_their_last_position():
    ids = np.array([[[5, 9, 2, 7]]]), np.array([[[1, 1, 0, 0]]])
    probe = other_size(_model(64), [{"position_ids": ids[0][0], "mask": ids[1][0]}], grow=True)
    assert probe.feeds[0]["position_ids"].tolist() == [[5, 9, 2, 7, 7, 7]]
    assert probe.feeds[0]["mask"].tolist() == [[1, 1, 0, 0, 0, 0]]
