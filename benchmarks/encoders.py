"""Transformer encoders for the quantization benchmark: BERT-, ViT- and GPT-2-style models built from
transformers configs with random weights (nothing is downloaded), exported to ONNX with the
TorchScript exporter, with calibration and test feeds drawn the way real inputs look (token ids,
images in [0, 1]). torch and transformers are imported here only: they are the benchmark's
environment, never a dependency of the package.

Eager attention (MatMul -> Softmax -> MatMul in the graph, not a fused SDPA op) is what an export for
TensorRT holds, and it is where int8 calibration goes wrong: the softmax output feeds a MatMul, so
its range is calibrated.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import onnx

SEQUENCE = 64
LAYERS = 6
HIDDEN = 128
HEADS = 4
VOCAB = 1000
IMAGE, PATCH = 32, 4


def _export(module, example: dict, names: list[str]) -> onnx.ModelProto:
    import torch

    buffer = io.BytesIO()
    with torch.no_grad():
        # a trailing dict in args would be read as keyword arguments: the empty one keeps `example` positional
        torch.onnx.export(module.eval(), (example, {}), buffer, input_names=names, output_names=["hidden"], opset_version=17, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


class _Wrapper:
    """forward(inputs dict) -> last hidden state, so every encoder exports with one output."""

    def __new__(cls, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, inputs):
                return self.model(**inputs).last_hidden_state

        return Wrapped()


def bert() -> tuple[onnx.ModelProto, Callable[[np.random.Generator], dict]]:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                        intermediate_size=4 * HIDDEN, max_position_embeddings=SEQUENCE, attn_implementation="eager")
    example = {"input_ids": torch.randint(1, VOCAB, (1, SEQUENCE)), "attention_mask": torch.ones(1, SEQUENCE, dtype=torch.int64)}
    model = _export(_Wrapper(BertModel(config)), example, list(example))
    return model, lambda rng: {"input_ids": rng.integers(1, VOCAB, (1, SEQUENCE), dtype=np.int64), "attention_mask": np.ones((1, SEQUENCE), np.int64)}


def vit() -> tuple[onnx.ModelProto, Callable[[np.random.Generator], dict]]:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=IMAGE, patch_size=PATCH, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                       intermediate_size=4 * HIDDEN, attn_implementation="eager")
    example = {"pixel_values": torch.rand(1, 3, IMAGE, IMAGE)}
    model = _export(_Wrapper(ViTModel(config, add_pooling_layer=False)), example, list(example))
    return model, lambda rng: {"pixel_values": _image(rng)}


def gpt2() -> tuple[onnx.ModelProto, Callable[[np.random.Generator], dict]]:
    import torch
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    # use_cache stays on: without a cache transformers looks for packed sequences (aten::diff, which
    # the TorchScript exporter cannot export)
    config = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=SEQUENCE, bos_token_id=0, eos_token_id=0,
                        attn_implementation="eager")
    example = {"input_ids": torch.randint(0, VOCAB, (1, SEQUENCE))}
    model = _export(_Wrapper(GPT2Model(config)), example, list(example))
    return model, lambda rng: {"input_ids": rng.integers(0, VOCAB, (1, SEQUENCE), dtype=np.int64)}


def _image(rng: np.random.Generator) -> np.ndarray:
    """Smooth images in [0, 1] (a blurred random field), not white noise."""
    coarse = rng.uniform(0, 1, (1, 3, IMAGE // 4, IMAGE // 4)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)


ENCODERS = {"bert_encoder": bert, "vit_encoder": vit, "gpt2_decoder": gpt2}


def build(name: str, *, calibration: int = 64, test: int = 32) -> tuple[onnx.ModelProto, list[dict], list[dict]]:
    """The model `name` with its calibration and test feeds (different seeds)."""
    model, feed = ENCODERS[name]()
    return model, [feed(np.random.default_rng(1000 + i)) for i in range(calibration)], [feed(np.random.default_rng(i)) for i in range(test)]
