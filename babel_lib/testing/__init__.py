"""Tiny random models of every supported architecture, built in code (no files), for tests and examples.

``tiny_model(model_type)`` returns a :class:`~babel_lib.core.models.LoadedModel` with 2 layers,
hidden size 64, an FFN of 128 neurons, a vocabulary of 260 and a byte-level tokenizer.
"""

from __future__ import annotations

import torch

from babel_lib.core.models import LoadedModel, model_fingerprint

TINY_FFN = 128


def _config(model_type: str):
    import transformers as tf

    common = dict(vocab_size=260, num_hidden_layers=2, num_attention_heads=4, hidden_size=64,
                  intermediate_size=TINY_FFN, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                  pad_token_id=0)
    if model_type == "llama":
        return tf.LlamaConfig(num_key_value_heads=2, **common)
    if model_type == "mistral":
        return tf.MistralConfig(num_key_value_heads=2, **common)
    if model_type == "qwen2":
        return tf.Qwen2Config(num_key_value_heads=2, **common)
    if model_type == "qwen3":
        return tf.Qwen3Config(num_key_value_heads=2, head_dim=16, **common)
    if model_type == "gemma":
        return tf.GemmaConfig(num_key_value_heads=1, head_dim=16, **common)
    if model_type == "gemma2":
        return tf.Gemma2Config(num_key_value_heads=1, head_dim=16, **common)
    if model_type == "gemma3_text":
        return tf.Gemma3TextConfig(num_key_value_heads=1, head_dim=16, **common)
    if model_type == "olmo":
        return tf.OlmoConfig(num_key_value_heads=2, **common)
    if model_type == "olmo2":
        return tf.Olmo2Config(num_key_value_heads=2, **common)
    if model_type == "phi3":
        return tf.Phi3Config(num_key_value_heads=2, **common)
    if model_type == "gpt_neox":
        return tf.GPTNeoXConfig(**common)
    if model_type == "gpt2":
        return tf.GPT2Config(vocab_size=260, n_layer=2, n_head=4, n_embd=64, n_inner=TINY_FFN, n_positions=256,
                             bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if model_type == "bloom":
        return tf.BloomConfig(vocab_size=260, n_layer=2, n_head=4, hidden_size=64, bos_token_id=1, eos_token_id=2,
                              pad_token_id=0)  # BLOOM's FFN is 4 x hidden = 256 neurons
    if model_type == "opt":
        return tf.OPTConfig(vocab_size=260, num_hidden_layers=2, num_attention_heads=4, hidden_size=64,
                            ffn_dim=TINY_FFN, word_embed_proj_dim=64, max_position_embeddings=256,
                            bos_token_id=1, eos_token_id=2, pad_token_id=0)
    raise ValueError(f"no tiny config for {model_type!r}")


TINY_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2", "phi3",
              "gpt_neox", "gpt2", "bloom", "opt")


class ByteTokenizer:
    """A byte-level tokenizer: id = byte + 4; 0 pad, 1 BOS, 2 EOS, 3 unused."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    pad_token, bos_token, eos_token = "<pad>", "<bos>", "<eos>"
    padding_side = "right"
    chat_template = None

    def __call__(self, text, add_special_tokens=True, **_):
        def one(t):
            ids = [b + 4 for b in t.encode("utf-8")]
            return ([self.bos_token_id] if add_special_tokens else []) + ids

        if isinstance(text, str):
            return {"input_ids": one(text)}
        return {"input_ids": [one(t) for t in text]}

    def decode(self, ids, skip_special_tokens=True):
        return bytes(i - 4 for i in ids if i >= 4).decode("utf-8", errors="replace")

    def convert_ids_to_tokens(self, ids):
        """Pieces as a SentencePiece vocabulary of printable ASCII would name them: an ASCII byte is a
        piece of its own, any other byte a byte-fallback piece ``<0xNN>``."""
        special = {0: self.pad_token, 1: self.bos_token, 2: self.eos_token, 3: "<unk>"}
        return [special[i] if i < 4 else (chr(i - 4) if 32 <= i - 4 < 127 else f"<0x{i - 4:02X}>") for i in ids]

    def __len__(self):
        return 260


def tiny_model(model_type: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A randomly initialised causal LM of ``model_type`` (deterministic for ``seed``)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = _config(model_type)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # random weights are tiny by default; widen them so that activations are not all ties
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
    model.eval()
    return LoadedModel(model, ByteTokenizer(), f"tiny-{model_type}", f"tiny random {model_type} (seed {seed})",
                       model_fingerprint(model))


def passages(texts: dict[str, list[str]], split: str = "calibration"):
    """Parallel passages from ``{language: [passage texts]}`` (the same number per language), for
    tests and examples that profile text of their own."""
    from babel_lib.data.corpus import Passages

    n = {len(v) for v in texts.values()}
    if len(n) != 1:
        raise ValueError("every language needs the same number of passages")
    return Passages("custom", split, [f"p{i}" for i in range(n.pop())], list(texts), dict(texts))


def tiny_qwen2_gguf(path, layers: int = 2, hidden: int = 64, ffn: int = TINY_FFN, seed: int = 0):
    """Write a tiny random qwen2 model (``layers`` x ``ffn`` neurons, hidden ``hidden``, 4 heads, tied
    embeddings, vocabulary of 260) as a float32 GGUF file with a byte-level BPE tokenizer (one merge,
    "H e"), as the offline models ship; return the transformers model it was written from. For tests of
    the GGUF path (chunked offline models, conversion) without any download."""
    from pathlib import Path

    import gguf
    import numpy as np
    import transformers as tf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    cfg = tf.Qwen2Config(vocab_size=260, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         hidden_size=hidden, intermediate_size=ffn, max_position_embeddings=256,
                         tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-6)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # wider than the default init, so that activations are not all ties
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
    w = gguf.GGUFWriter(str(Path(path)), "qwen2")
    w.add_context_length(256)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_embedding_length(hidden)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(0)
    spell = bytes_to_unicode()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([spell[b] for b in range(256)] + ["He", "<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    w.add_token_types([1] * 257 + [3] * 3)
    w.add_token_merges(["H e"])
    w.add_bos_token_id(257)
    w.add_eos_token_id(257)
    w.add_pad_token_id(257)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    for i in range(layers):
        for hf, gg in (("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                       ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                       ("mlp.down_proj", "ffn_down")):
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{gg}.weight"
            names[f"model.layers.{i}.{hf}.bias"] = f"blk.{i}.{gg}.bias"
        names[f"model.layers.{i}.input_layernorm.weight"] = f"blk.{i}.attn_norm.weight"
        names[f"model.layers.{i}.post_attention_layernorm.weight"] = f"blk.{i}.ffn_norm.weight"
    for name, tensor in model.state_dict().items():
        if name in names:
            w.add_tensor(names[name], tensor.detach().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model
