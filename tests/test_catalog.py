"""Tests for llminfra_lab.catalog: parameter counts from configurations against published totals."""
import dataclasses

import pytest

from llminfra_lab.catalog import MODELS, ModelSpec, gpt_config_fields, model_spec, spec_from_gpt_config
from llminfra_lab.model import GPT, GPTConfig, tiny_config

REQUIRED = ["llama-2-7b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3-405b", "mixtral-8x7b",
            "deepseek-v3", "qwen2.5-7b", "qwen2.5-72b"]


def test_catalog_has_the_required_models_with_sources():
    assert set(REQUIRED) <= set(MODELS)
    for name, spec in MODELS.items():
        assert spec.name == name and "huggingface.co" in spec.source


# Published totals: the checkpoints' counts on the Hugging Face model pages (Llama 2 7B 6.74B, Llama 3 8B
# 8.03B, Llama 3 70B 70.6B), the model cards of Qwen2.5 (7.61B, 72.7B), Mistral AI's Mixtral announcement
# (46.7B), the DeepSeek-V3 report (671B) and the Llama 3 paper (405B). Llama 2 70B is published only as
# "70B", a rounded name, hence its wider tolerance.
@pytest.mark.parametrize("name,tolerance", [
    ("llama-2-7b", 0.005), ("llama-2-70b", 0.02), ("llama-3-8b", 0.005), ("llama-3-70b", 0.005),
    ("llama-3-405b", 0.005), ("mixtral-8x7b", 0.005), ("deepseek-v3", 0.005), ("qwen2.5-7b", 0.005),
    ("qwen2.5-72b", 0.005),
])
def test_total_params_match_published(name, tolerance):
    """Total parameters counted from config.json shapes vs the totals the authors published (see source)."""
    spec = model_spec(name)
    assert spec.total_params() == pytest.approx(spec.params_published, rel=tolerance)


def test_exact_counts_of_dense_checkpoints():
    """Exact element counts of the released checkpoints: Llama 2 7B has 6,738,415,616 parameters
    (the count peft's print_trainable_parameters reports for meta-llama/Llama-2-7b-hf)."""
    assert model_spec("llama-2-7b").total_params() == 6_738_415_616


def test_mixtral_total_and_active():
    """Mistral AI, 'Mixtral of experts' (2023): 46.7B total parameters, 12.9B used per token."""
    spec = model_spec("mixtral-8x7b")
    assert spec.total_params() == pytest.approx(46.7e9, rel=0.005)
    assert spec.active_params() == pytest.approx(12.9e9, rel=0.005)


def test_deepseek_v3_total_active_and_mtp():
    """DeepSeek-V3 technical report (arXiv:2412.19437): 671B total, 37B activated per token. Its weights
    README: 36.6B activated in the main model (input embedding excluded, 0.9B output head included) and an
    MTP module of 11.5B unique parameters (685B in the released checkpoint)."""
    spec = model_spec("deepseek-v3")
    assert spec.total_params() == pytest.approx(671e9, rel=0.005)
    assert spec.active_params() == pytest.approx(37e9, rel=0.02)
    parts = spec.param_breakdown(active=True)
    assert spec.active_params() - parts["embedding"] == pytest.approx(36.6e9, rel=0.005)
    assert parts["lm_head"] == pytest.approx(0.9e9, rel=0.05)
    mtp = spec.total_params(include_mtp=True) - spec.total_params()
    assert mtp == pytest.approx(11.5e9, rel=0.02)


def test_qwen_non_embedding_counts():
    """Qwen2.5 model cards: 7B has 6.53B non-embedding parameters, 72B has 70.0B."""
    for name, published in (("qwen2.5-7b", 6.53e9), ("qwen2.5-72b", 70.0e9)):
        parts = model_spec(name).param_breakdown()
        non_embedding = sum(parts.values()) - parts["embedding"] - parts["lm_head"]
        assert non_embedding == pytest.approx(published, rel=0.005)


def test_dense_models_have_active_equal_total():
    for name in ("llama-2-7b", "llama-3-405b", "qwen2.5-72b"):
        spec = model_spec(name)
        assert spec.active_params() == spec.total_params() and not spec.is_moe


def test_count_matches_a_built_pytorch_model():
    """The counting formula equals the number of elements in an actual GPT built with the same shapes
    (tied and untied embeddings)."""
    for tied in (True, False):
        cfg = GPTConfig(vocab_size=300, n_layer=3, n_head=6, n_kv_head=2, d_model=96, d_ff=256,
                        tie_embeddings=tied)
        spec = ModelSpec("tiny", cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.d_ff,
                         cfg.vocab_size, tied_embeddings=tied, params_published=1.0, source="test")
        assert spec.total_params() == GPT(cfg).num_params()


def test_moe_counts_by_hand():
    """A toy MoE: 2 layers, d=4, 4 experts of width 8, top-1, one shared expert, first layer dense."""
    spec = ModelSpec("toy", 2, 4, 2, 1, 2, 16, 10, n_experts=4, experts_per_token=1, n_shared_experts=1,
                     moe_d_ff=8, n_dense_layers=1, params_published=1.0, source="test")
    attention = 4 * 2 * 2 + 2 * 4 * 1 * 2 + 2 * 2 * 4                 # q, k+v, o
    dense_ffn, expert, router = 3 * 4 * 16, 3 * 4 * 8, 4 * 4
    norms = 2 * (2 * 4) + 4
    base = 2 * 10 * 4 + 2 * attention + norms + dense_ffn + router
    assert spec.total_params() == base + 5 * expert
    assert spec.active_params() == base + 2 * expert


def test_model_spec_lookup():
    assert model_spec("Llama-3-8B") is MODELS["llama-3-8b"]
    with pytest.raises(KeyError, match="llama-3-8b"):
        model_spec("llama-4")
    with pytest.raises(KeyError, match="model name must be a str"):
        model_spec(7)


@pytest.mark.parametrize("change,match", [
    ({"n_layers": 0}, "n_layers must be an int >= 1"), ({"d_model": -1}, "d_model must be an int >= 1"),
    ({"n_heads": 1.5}, "n_heads must be an int >= 1"), ({"n_kv_heads": 5}, r"multiple of n_kv_heads \(5\)"),
    ({"n_experts": 0}, "n_experts must be an int >= 1"), ({"experts_per_token": 9}, r"exceeds n_experts \(8\)"),
    ({"n_shared_experts": -1}, "n_shared_experts must be an int >= 0"), ({"n_dense_layers": 33}, r"exceeds n_layers \(32\)"),
    ({"params_published": 0}, "params_published must be a positive number"), ({"source": ""}, "source must be a non-empty string"),
    ({"vocab_size": True}, "vocab_size must be an int >= 1"),
])
def test_spec_rejects_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(model_spec("mixtral-8x7b"), **change)


def test_breakdown_rejects_bad_flags():
    with pytest.raises(ValueError, match="active and include_mtp must be bools"):
        model_spec("llama-3-8b").param_breakdown(active="yes")
    with pytest.raises(ValueError, match="active and include_mtp must be bools"):
        model_spec("deepseek-v3").total_params(include_mtp=1)


# ----------------------------------------------------------------------------- GPTConfig <-> ModelSpec

@pytest.mark.parametrize("name", ["target", "draft", "small", "test"])
def test_spec_from_gpt_config_counts_the_built_model(name):
    """The spec of a tiny GPT counts exactly the parameters PyTorch allocates for that GPT
    (sum of numel over GPT(cfg).parameters(), tied embedding counted once)."""
    cfg = tiny_config(name)
    spec = spec_from_gpt_config(cfg, name=f"tiny-{name}")
    built = sum(p.numel() for p in GPT(cfg).parameters())
    assert spec.total_params() == spec.active_params() == built == spec.params_published
    assert (spec.name, spec.n_layers, spec.n_heads, spec.n_kv_heads) == (f"tiny-{name}", cfg.n_layer, cfg.n_head, cfg.n_kv_head)
    assert spec.tied_embeddings == cfg.tie_embeddings and spec.head_dim == cfg.head_dim


@pytest.mark.parametrize("name", ["target", "small"])
def test_gpt_config_fields_round_trip(name):
    """GPTConfig -> ModelSpec -> GPTConfig keeps every field the two share (the rest take
    GPTConfig's defaults)."""
    cfg = tiny_config(name)
    back = GPTConfig(**{**gpt_config_fields(spec_from_gpt_config(cfg)), "max_seq_len": cfg.max_seq_len})
    assert back == cfg


def test_gpt_config_fields_of_a_dense_catalog_model():
    """Llama 2 7B's shape as a GPTConfig; mapped back, it counts the catalog's 6.74B again."""
    fields = gpt_config_fields(model_spec("llama-2-7b"))
    assert fields == {"n_layer": 32, "d_model": 4096, "n_head": 32, "n_kv_head": 32, "d_ff": 11008,
                      "vocab_size": 32000, "tie_embeddings": False}
    cfg = GPTConfig(**fields)
    assert spec_from_gpt_config(cfg).total_params() == model_spec("llama-2-7b").total_params()


@pytest.mark.parametrize("name,why", [("mixtral-8x7b", "mixtral-8x7b is not a plain dense"),
                                      ("deepseek-v3", "deepseek-v3 is not a plain dense"),
                                      ("qwen2.5-7b", "qwen2.5-7b is not a plain dense")])
def test_gpt_config_fields_refuses_shapes_the_tiny_gpt_cannot_take(name, why):
    with pytest.raises(ValueError, match=why):
        gpt_config_fields(model_spec(name))


def test_conversions_reject_bad_input():
    with pytest.raises(ValueError, match="spec must be a ModelSpec"):
        gpt_config_fields({"n_layers": 2})
    with pytest.raises(ValueError, match="cfg must be a model.GPTConfig; it lacks"):
        spec_from_gpt_config({"n_layer": 2})
