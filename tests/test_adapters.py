"""The FFN adapter table: the hooked neuron value equals a manual computation, on every architecture."""

import pytest
import torch

from babel_lib.core.adapters import FFN_ADAPTERS, ffn_layers
from babel_lib.core.errors import UnsupportedArchitectureError
from babel_lib.core.hooks import ffn_pre_hooks
from babel_lib.testing import TINY_TYPES, tiny_model


def manual_neuron_values(model_type, block, x):
    """a = act(gate x) * up x, or act(fc1 x), computed from the block's own modules (not the adapter)."""
    if model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2"):
        m = block.mlp
        return m.act_fn(m.gate_proj(x)) * m.up_proj(x)
    if model_type == "phi3":
        gate, up = block.mlp.gate_up_proj(x).chunk(2, dim=-1)
        return block.mlp.activation_fn(gate) * up
    if model_type == "gpt2":
        return block.mlp.act(block.mlp.c_fc(x))
    if model_type == "bloom":
        return block.mlp.gelu_impl(block.mlp.dense_h_to_4h(x))
    if model_type == "gpt_neox":
        return block.mlp.act(block.mlp.dense_h_to_4h(x))
    if model_type == "opt":
        return block.activation_fn(block.fc1(x))
    raise AssertionError(model_type)


def test_table_covers_required_architectures():
    required = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt2", "bloom", "opt",
                "phi3", "gpt_neox"}
    assert required <= set(FFN_ADAPTERS)
    assert set(TINY_TYPES) == set(FFN_ADAPTERS)


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_hooked_value_equals_manual(model_type):
    lm = tiny_model(model_type)
    layers = ffn_layers(lm.model)
    assert len(layers) == 2
    # capture each FFN's input (the block's mlp input; OPT's fc1 input) and the hooked value
    ffn_inputs, hooked = {}, {}
    handles = []
    for layer in layers:
        first = layer.up if layer.spec.mlp == "" else layer.mlp
        handles.append(first.register_forward_pre_hook(
            lambda _m, args, i=layer.index: ffn_inputs.__setitem__(i, args[0].detach().clone())))
    ids = torch.randint(4, 260, (2, 7))
    with ffn_pre_hooks(lm.model, lambda i, a: hooked.__setitem__(i, a.detach().clone())):
        lm.model(input_ids=ids)
    for h in handles:
        h.remove()
    for layer in layers:
        block = (layer.mlp if layer.spec.mlp == "" else
                 lm.model.base_model.get_submodule(layer.spec.layers)[layer.index])
        expect = manual_neuron_values(model_type, block, ffn_inputs[layer.index])
        assert hooked[layer.index].shape[-1] == layer.n_neurons
        torch.testing.assert_close(hooked[layer.index], expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_hooks_removed_on_error(model_type):
    lm = tiny_model(model_type)
    with pytest.raises(RuntimeError, match="boom"):
        with ffn_pre_hooks(lm.model, lambda i, a: None):
            raise RuntimeError("boom")
    assert all(not layer.down._forward_pre_hooks for layer in ffn_layers(lm.model))


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_permutation_leaves_output_unchanged(model_type):
    lm = tiny_model(model_type)
    ids = torch.randint(4, 260, (1, 9))
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
        for layer in ffn_layers(lm.model):
            layer.select_neurons(torch.randperm(layer.n_neurons))
        after = lm.model(input_ids=ids).logits
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-4)


def test_unknown_architecture_lists_supported():
    lm = tiny_model("llama")
    lm.model.config.model_type = "mamba"
    with pytest.raises(UnsupportedArchitectureError, match=r"Supported: .*gemma3_text.*llama"):
        ffn_layers(lm.model)


def test_input_rows_shapes():
    lm = tiny_model("phi3")
    layer = ffn_layers(lm.model)[0]
    assert layer.input_rows("gate").shape == (128, 64)
    assert layer.input_rows("both").shape == (128, 128)
    gpt2 = ffn_layers(tiny_model("gpt2").model)[0]
    assert gpt2.input_rows("gate").shape == (128, 64)
    with pytest.raises(ValueError, match="which must be"):
        layer.input_rows("down")
