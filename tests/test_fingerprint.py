"""The weight fingerprint keys every cached result: it must change with any change of any weight, and
only then (issue: a strided sample missed edits between its samples, and an edited model was served
the original model's cached profile)."""

import torch

from babel_lib.core.models import model_fingerprint
from babel_lib.testing import tiny_model


def test_the_same_weights_give_the_same_fingerprint():
    a, b = tiny_model("llama", seed=0), tiny_model("llama", seed=0)
    assert model_fingerprint(a.model) == model_fingerprint(b.model) == a.fingerprint
    assert len(a.fingerprint) == 16


def test_any_single_weight_change_changes_the_fingerprint():
    lm = tiny_model("gemma3_text", seed=0)
    before = model_fingerprint(lm.model)
    state = lm.model.state_dict()
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        flat = tensor.view(-1)
        for index in (1, flat.numel() // 2 + 1, flat.numel() - 1):  # between any stride's samples
            old = flat[index].item()
            with torch.no_grad():
                flat[index] = old + 1e-3
            assert model_fingerprint(lm.model) != before, f"{name}[{index}] changed, fingerprint did not"
            with torch.no_grad():
                flat[index] = old
    assert model_fingerprint(lm.model) == before


def test_architecture_and_dtype_enter_the_fingerprint():
    lm = tiny_model("llama", seed=0)
    before = lm.fingerprint
    assert model_fingerprint(lm.model.to(torch.bfloat16)) != before
    assert tiny_model("mistral", seed=0).fingerprint != before
