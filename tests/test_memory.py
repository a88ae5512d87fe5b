"""Tests for llminfra_lab.memory: model-state bytes under ZeRO and activation bytes per layer.

References: the ZeRO paper's per-stage terms and Figure 1 (Rajbhandari et al. 2020), and
the activation-memory breakdown of Korthikanti et al. 2022 counted tensor by tensor in a
brute force written here. Chapter 7's tests check the same formulas against a real
sharded run and against what autograd saves.
"""
from __future__ import annotations

import pytest

from llminfra_lab import memory


def test_zero_paper_figure1():
    """ZeRO (Rajbhandari 2020) Figure 1: 7.5B parameters, K=12, 64 GPUs: 120 GB, 31.4 GB, 16.6 GB, 1.88 GB per GPU."""
    for stage, published_gb in {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.88}.items():
        got = memory.model_state_bytes(7.5e9, stage, 64, k=12)["total"] / 1e9
        assert got == pytest.approx(published_gb, abs=0.05), (stage, got)


def test_model_state_parts_follow_the_paper_terms():
    """Rajbhandari 2020, Section 5: stage 1 = 4 Psi + K Psi/Nd, stage 2 = 2 Psi + (2+K) Psi/Nd, stage 3 = (4+K) Psi/Nd."""
    psi, n, k = 1000.0, 8, 12
    totals = [memory.model_state_bytes(psi, s, n, k=k)["total"] for s in memory.ZERO_STAGES]
    assert totals == pytest.approx([16 * psi, 4 * psi + k * psi / n, 2 * psi + (2 + k) * psi / n, (4 + k) * psi / n])
    # one rank: every stage holds everything
    assert {memory.model_state_bytes(psi, s, 1, k=k)["total"] for s in memory.ZERO_STAGES} == {16 * psi}
    parts = memory.model_state_bytes(psi, 2, n, k=8, param_bytes=4, grad_bytes=4)
    assert parts == {"params": 4 * psi, "grads": 4 * psi / n, "optimizer": 8 * psi / n,
                     "total": 4 * psi + 12 * psi / n}
    # the defaults: DDP on one GPU, mixed-precision Adam
    assert memory.model_state_bytes(psi)["total"] == 16 * psi


def _korthikanti_brute_force(s, b, h, a, t=1, sp=False, selective=False, dropout=True):
    """Activation bytes of one layer, listing each stored tensor as in Korthikanti 2022, Section 4.1.

    Each entry: (bytes, split by tensor parallelism, split by sequence parallelism, is an
    attention-score tensor, exists only with dropout). 16-bit values (2 bytes), dropout
    masks 1 byte; a s^2 b entries are attention scores.
    """
    sbh, as2b = s * b * h, a * s * s * b
    tensors = [
        (2 * sbh, False, True, False, False),   # LayerNorm 1 input
        (2 * sbh, False, True, False, False),   # QKV projection input
        (2 * sbh, True, False, False, False),   # Q
        (2 * sbh, True, False, False, False),   # K
        (2 * as2b, True, False, True, False),   # softmax output
        (1 * as2b, True, False, True, True),    # softmax dropout mask
        (2 * as2b, True, False, True, True),    # dropout output, input to probs @ V
        (2 * sbh, True, False, False, False),   # V
        (2 * sbh, True, False, False, False),   # output projection input
        (1 * sbh, False, True, False, True),    # attention dropout mask
        (2 * sbh, False, True, False, False),   # LayerNorm 2 input
        (2 * sbh, False, True, False, False),   # MLP first linear input
        (8 * sbh, True, False, False, False),   # GeLU input (4h wide)
        (8 * sbh, True, False, False, False),   # GeLU output, second linear input
        (1 * sbh, False, True, False, True),    # MLP dropout mask
    ]
    total = 0.0
    for nbytes, tp_split, sp_split, score, needs_dropout in tensors:
        if (selective and score) or (needs_dropout and not dropout):
            continue
        total += nbytes / t if tp_split or (sp and sp_split) else nbytes
    return total


@pytest.mark.parametrize("s,b,h,a", [(2048, 1, 12288, 96), (512, 4, 1024, 16), (7, 3, 40, 8)])
@pytest.mark.parametrize("t,sp,recompute", [(1, False, "none"), (8, False, "none"), (8, True, "none"),
                                            (8, False, "selective"), (8, True, "selective"),
                                            (1, False, "selective")])
@pytest.mark.parametrize("dropout", [True, False])
def test_activation_formula_against_brute_force(s, b, h, a, t, sp, recompute, dropout):
    """Korthikanti 2022, Table 2: s b h (34 + 5 a s / h) without parallelism, and its TP/SP/selective variants."""
    got = memory.activation_bytes_per_layer(s, b, h, a, tensor_parallel=t, sequence_parallel=sp,
                                            recompute=recompute, dropout=dropout)
    assert got == pytest.approx(_korthikanti_brute_force(s, b, h, a, t, sp, recompute == "selective", dropout))


def test_activation_paper_forms():
    """Korthikanti 2022: sbh(34 + 5as/h) with no parallelism; 2sbh with full recomputation; GPT-3 numbers."""
    s, b, h, a = 2048, 1, 12288, 96            # GPT-3 175B shape used in the paper
    assert memory.activation_bytes_per_layer(s, b, h, a) == pytest.approx(s * b * h * (34 + 5 * a * s / h))
    # the attention term dominates at this shape: 5as/h = 80 > 34
    assert 5 * a * s / h == 80


def test_full_recompute_keeps_the_layer_input():
    """Full recomputation keeps only each layer's 16-bit input, 2 s b h bytes: Korthikanti 2022's Table 2 value,
    whatever t, when the input is replicated (sequence_parallel=False). With sequence parallelism the input
    is split along the sequence over the t ranks, so each keeps 2 s b h / t (chapter 6's planner relies on it)."""
    s, b, h, a = 2048, 1, 12288, 96
    for t in (1, 2, 8):
        assert memory.activation_bytes_per_layer(s, b, h, a, t, False, "full") == 2 * s * b * h
        assert memory.activation_bytes_per_layer(s, b, h, a, t, True, "full") == 2 * s * b * h / t
    assert memory.activation_bytes_per_layer(s, b, h, a, 8, True, "full", dropout=False) == 2 * s * b * h / 8


def test_model_state_bytes_rejects_bad_input():
    with pytest.raises(ValueError, match="params must be a finite number > 0"):
        memory.model_state_bytes(0, 1, 8)
    with pytest.raises(ValueError, match="stage must be one of"):
        memory.model_state_bytes(1e9, 4, 8)
    with pytest.raises(ValueError, match="n_gpus must be an int >= 1"):
        memory.model_state_bytes(1e9, 1, 0)
    with pytest.raises(ValueError, match="k must be a number >= 0"):
        memory.model_state_bytes(1e9, 1, 8, k=-1)
    with pytest.raises(ValueError, match="param_bytes must be a number >= 0"):
        memory.model_state_bytes(1e9, 1, 8, param_bytes="2")
    with pytest.raises(ValueError, match="grad_bytes must be a number >= 0"):
        memory.model_state_bytes(1e9, 1, 8, grad_bytes=True)
    with pytest.raises(TypeError, match="positional"):
        memory.model_state_bytes(1e9, 1, 8, 12)                 # k is keyword-only


def test_activation_bytes_rejects_bad_input():
    with pytest.raises(ValueError, match="seq_len must be an int >= 1"):
        memory.activation_bytes_per_layer(0, 1, 64, 4)
    with pytest.raises(ValueError, match="tensor_parallel must be an int >= 1"):
        memory.activation_bytes_per_layer(16, 1, 64, 4, tensor_parallel=0)
    with pytest.raises(ValueError, match="divisible"):
        memory.activation_bytes_per_layer(16, 1, 64, 3)
    with pytest.raises(ValueError, match="divisible"):
        memory.activation_bytes_per_layer(16, 1, 64, 4, tensor_parallel=3)
    with pytest.raises(ValueError, match="recompute must be one of"):
        memory.activation_bytes_per_layer(16, 1, 64, 4, recompute="some")
    with pytest.raises(ValueError, match="bools"):
        memory.activation_bytes_per_layer(16, 1, 64, 4, dropout="no")
    with pytest.raises(ValueError, match="bools"):
        memory.activation_bytes_per_layer(16, 1, 64, 4, sequence_parallel=1)


def test_kv_cache_bytes_per_token_published():
    """KV cache per token: Llama-2-7B fp16 2 x 32 layers x 32 heads x 128 x 2 bytes = 512 KiB;
    Llama-3-70B (GQA, 8 KV heads, 80 layers) 320 KiB; DeepSeek-V3 MLA caches 512 + 64 values
    per layer per token (DeepSeek-AI 2024, arXiv:2412.19437; DeepSeek-V2 section 2.1)."""
    from llminfra_lab.catalog import model_spec
    assert memory.kv_cache_bytes_per_token(model_spec("llama-2-7b"), "fp16") == 512 * 1024
    assert memory.kv_cache_bytes_per_token(model_spec("llama-3-70b"), "bf16") == 320 * 1024
    v3 = model_spec("deepseek-v3")
    assert memory.kv_cache_bytes_per_token(v3, "bf16") == 61 * (512 + 64) * 2
    assert memory.kv_cache_bytes_per_token(v3, "fp8") == 61 * 576
    with pytest.raises(ValueError, match="ModelSpec"):
        memory.kv_cache_bytes_per_token("llama-2-7b")
    with pytest.raises(ValueError, match="unknown dtype"):
        memory.kv_cache_bytes_per_token(model_spec("llama-2-7b"), "fp12")
