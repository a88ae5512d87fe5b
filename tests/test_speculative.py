"""Tests for llminfra_lab.speculative: draft-and-verify, prompt lookup, Jacobi decoding, Medusa.

References: the target's own greedy decoding (`model.generate`, temperature 0) and its own
softmax; Leviathan et al. 2023 (eq. 1 and Theorem 3.8) and Chen et al. 2023 (Theorem 1:
modified rejection sampling recovers the target distribution), checked by exact algebra and
by Pearson chi-square tests at significance 0.001 on the shipped target and draft; brute
force written plainly here for the n-gram lookup and the tree mask.
"""
from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import model
from llminfra_lab.speculative import (
    MEDUSA_TREE,
    MedusaHeads,
    accept_or_resample,
    acceptance_probability,
    chi_square_gof,
    expected_speedup,
    expected_tokens_per_step,
    greedy_generate,
    jacobi_decode,
    load_medusa_heads,
    medusa_generate,
    plot_draft_verify_schematic,
    plot_expected_tokens,
    plot_tree_mask,
    prompt_lookup_draft,
    prompt_lookup_generate,
    residual_distribution,
    speculative_generate,
    train_medusa_heads,
    tree_attention_mask,
    tree_forward,
)

SIGNIFICANCE = 0.001          # reject "same distribution" only when p < 0.001
ARITH_PREFIX = "12+7="        # a prefix where the draft disagrees often (alpha ~ 0.55)


@pytest.fixture(scope="module")
def models():
    target, tok = model.load_pretrained("target")
    draft, _ = model.load_pretrained("draft")
    return target, draft, tok


def _ids(tok, text):
    return torch.tensor([tok.encode(text)])


# ----------------------------------------------------------------------------- theory

def test_expected_tokens_leviathan_closed_form():
    """Leviathan et al. 2023, eq. 1: E[tokens per step] = (1 - a^(g+1)) / (1 - a), the mean of a capped geometric."""
    for alpha in (0.0, 0.3, 0.6, 0.8, 0.95):
        for gamma in (0, 1, 3, 5, 8):
            brute = sum(alpha ** k for k in range(gamma + 1))          # P(at least k drafts accepted), k = 0..gamma
            assert expected_tokens_per_step(alpha, gamma) == pytest.approx(brute, rel=1e-12)
    assert expected_tokens_per_step(1.0, 4) == 5.0
    rng = random.Random(0)                                           # simulate i.i.d. acceptances
    alpha, gamma, steps = 0.7, 4, 40_000
    emitted = 0
    for _ in range(steps):
        k = 0
        while k < gamma and rng.random() < alpha:
            k += 1
        emitted += k + 1
    assert emitted / steps == pytest.approx(expected_tokens_per_step(alpha, gamma), rel=0.01)


def test_expected_speedup_theorem():
    """Leviathan et al. 2023, Theorem 3.8: speed-up (1 - a^(g+1)) / ((1 - a)(g c + 1)); e.g. a=0.8, g=5, c=0.05."""
    assert expected_speedup(0.8, 5, 0.05) == pytest.approx((1 - 0.8 ** 6) / (0.2 * 1.25))
    assert expected_speedup(0.5, 3, 0.0) == expected_tokens_per_step(0.5, 3)


@pytest.mark.slow
def test_measured_tokens_per_pass_match_leviathan(models):
    """Accepted tokens per target pass on the shipped models are within 10% of eq. 1 at the measured alpha."""
    target, draft, tok = models
    for gamma in (2, 4):
        gen = torch.Generator().manual_seed(gamma)
        passes = new = 0
        betas = []
        for prompt in ("Once upon a time, there was a", "Mia liked to", ARITH_PREFIX):
            _, st = speculative_generate(target, draft, _ids(tok, prompt), 120, gamma=gamma, generator=gen)
            passes, new, betas = passes + st.target_passes, new + st.new_tokens, betas + st.betas
        alpha = sum(betas) / len(betas)
        assert new / passes == pytest.approx(expected_tokens_per_step(alpha, gamma), rel=0.10)


# ----------------------------------------------------------------------------- exactness

@given(st.integers(2, 12), st.integers(0, 10_000))
@settings(max_examples=60, deadline=None)
def test_rejection_sampling_is_exact_algebra(vocab, seed):
    """Chen et al. 2023, Theorem 1: q(x) min(1, p(x)/q(x)) + (1 - beta) r(x) = p(x) for every x."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(vocab, generator=gen, dtype=torch.float64) * 2, -1)
    q = torch.softmax(torch.randn(vocab, generator=gen, dtype=torch.float64) * 2, -1)
    beta = acceptance_probability(p, q)
    accept = q * torch.clamp(p / q, max=1.0)
    total = accept + (1 - beta) * residual_distribution(p, q)
    assert torch.allclose(total, p, atol=1e-12)
    assert float(beta) == pytest.approx(1 - 0.5 * float((p - q).abs().sum()), abs=1e-12)   # 1 - TV(p, q)


def test_residual_distribution_edge_cases():
    """When p == q the residual is empty; r is p itself (a rejection cannot happen there)."""
    p = torch.tensor([0.2, 0.3, 0.5])
    assert torch.equal(residual_distribution(p, p), p)
    assert torch.allclose(residual_distribution(p, torch.tensor([0.5, 0.3, 0.2])), torch.tensor([0.0, 0.0, 1.0]))


def _target_and_draft_probs(models, text):
    target, draft, tok = models
    idx = _ids(tok, text)
    with torch.no_grad():
        return torch.softmax(target(idx)[0, -1], -1), torch.softmax(draft(idx)[0, -1], -1)


def test_one_step_distribution_chi_square(models):
    """Chen et al. 2023 / Leviathan et al. 2023: draws of accept-or-resample at a fixed prefix follow the
    TARGET's next-token distribution (chi-square, significance 0.001), and not the draft's."""
    p, q = _target_and_draft_probs(models, ARITH_PREFIX)
    assert float(acceptance_probability(p, q)) < 0.8                 # the test exercises rejections
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros_like(p)
    xs = torch.multinomial(q, 20_000, replacement=True, generator=gen)
    us = torch.rand(20_000, generator=gen)
    for x, u in zip(xs.tolist(), us.tolist()):
        counts[accept_or_resample(p, q, x, u, gen)[1]] += 1
    assert chi_square_gof(counts, p)[2] > SIGNIFICANCE
    assert chi_square_gof(counts, q)[2] < SIGNIFICANCE                # the test has the power to tell them apart
    naive = torch.zeros_like(p)                                       # resampling from p (not p - q) is biased
    for x, u in zip(xs.tolist(), us.tolist()):
        y = x if u * q[x] < p[x] else int(torch.multinomial(p, 1, generator=gen))
        naive[y] += 1
    assert chi_square_gof(naive, p)[2] < SIGNIFICANCE


@pytest.mark.slow
def test_speculative_sampling_output_distribution_chi_square(models):
    """Leviathan et al. 2023 (Appendix A.1) / Chen et al. 2023 (Theorem 1): the first two tokens that the whole
    draft-and-verify loop emits after a fixed prefix follow the target's joint distribution p(x1) p(x2 | x1):
    Pearson chi-square at significance 0.001, 1,000 runs with gamma = 3 on the shipped models."""
    target, draft, tok = models
    idx = _ids(tok, ARITH_PREFIX)
    gen = torch.Generator().manual_seed(1)
    pairs = {}
    for _ in range(1000):
        out, _ = speculative_generate(target, draft, idx, 2, gamma=3, generator=gen)
        key = tuple(out[0, -2:].tolist())
        pairs[key] = pairs.get(key, 0) + 1
    with torch.no_grad():
        p1 = torch.softmax(target(idx)[0, -1], -1)
        firsts = torch.nonzero(p1 > 1e-4).flatten().tolist()
        seqs = torch.cat([idx.repeat(len(firsts), 1), torch.tensor(firsts).view(-1, 1)], dim=1)
        p2 = torch.softmax(target(seqs)[:, -1], -1)
    joint = (p1[firsts].view(-1, 1) * p2).flatten()
    counts = torch.zeros_like(joint)
    for (a, b), c in pairs.items():
        if a in firsts:
            counts[firsts.index(a) * p2.shape[1] + b] += c
    joint = torch.cat([joint, (1 - joint.sum()).clamp_min(0).view(1)])            # everything else
    counts = torch.cat([counts, torch.tensor([1000 - counts.sum()])])
    assert chi_square_gof(counts, joint / joint.sum())[2] > SIGNIFICANCE


@pytest.mark.parametrize("gamma", [1, 4])
def test_greedy_speculative_equals_target_greedy(models, gamma):
    """Temperature 0: draft-and-verify emits exactly the target's greedy tokens (model.generate)."""
    target, draft, tok = models
    for prompt in ("Sam met Zoe, a", ARITH_PREFIX):
        idx = _ids(tok, prompt)
        ref = model.generate(target, idx, 30, temperature=0)
        out, st = speculative_generate(target, draft, idx, 30, gamma=gamma, temperature=0)
        assert torch.equal(out, ref)
        assert st.new_tokens == 30 and st.target_passes == len(st.accepted)
        assert st.new_tokens == sum(st.accepted) + st.target_passes            # accepted drafts + one per pass
        assert all(0 <= a <= gamma for a in st.accepted)
    greedy, passes = greedy_generate(target, idx, 10)
    assert passes == 10 and torch.equal(greedy, ref[:, :idx.shape[1] + 10])


# ----------------------------------------------------------------------------- drafting without a draft model

def _lookup_brute(tokens, max_ngram, num_draft):
    for n in range(max_ngram, 0, -1):
        if n >= len(tokens):
            continue
        hits = [s for s in range(len(tokens) - n) if tokens[s:s + n] == tokens[-n:]]
        if hits:
            s = max(hits)
            return tokens[s + n:s + n + num_draft]
    return []


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.integers(1, 4), st.integers(1, 6))
@settings(max_examples=200, deadline=None)
def test_prompt_lookup_draft_against_brute_force(tokens, max_ngram, num_draft):
    """The longest trailing n-gram's latest earlier occurrence proposes what followed it."""
    assert prompt_lookup_draft(tokens, max_ngram, num_draft) == _lookup_brute(tokens, max_ngram, num_draft)


def test_prompt_lookup_generate_equals_greedy(models):
    """Prompt-lookup drafts verified greedily give the target's greedy tokens, in fewer passes."""
    target, _, tok = models
    idx = _ids(tok, "Sam liked to swim in the forest. Sam liked to")
    ref = model.generate(target, idx, 30, temperature=0)
    out, st = prompt_lookup_generate(target, idx, 30)
    assert torch.equal(out, ref)
    assert st.new_tokens == 30 and st.target_passes < 30 and st.accepted <= st.drafted


def test_jacobi_fixed_point_is_greedy(models):
    """Santilli et al. 2023: Jacobi iteration converges to the greedy block in at most n passes (+1 to confirm)."""
    target, _, tok = models
    for prompt, n in (("Once upon a time, there was a", 8), (ARITH_PREFIX, 4)):
        idx = _ids(tok, prompt)
        out, traj = jacobi_decode(target, idx, n)
        assert torch.equal(out, model.generate(target, idx, n, temperature=0))
        assert traj[-1] == traj[-2] and len(traj) - 1 <= n + 1
        for i, y in enumerate(traj[1:], 1):                       # after i passes the first i tokens are final
            assert y[:i] == traj[-1][:i]


# ----------------------------------------------------------------------------- Medusa and tree attention

def test_tree_attention_mask_brute_force():
    """Node i sees node j exactly when j is i or one of its ancestors."""
    mask = tree_attention_mask(MEDUSA_TREE)
    for i, pi in enumerate(MEDUSA_TREE):
        ancestors = {pi[:k] for k in range(1, len(pi) + 1)}
        for j, pj in enumerate(MEDUSA_TREE):
            assert bool(mask[i, j]) == (pj in ancestors)


def test_tree_forward_with_causal_mask_is_the_model(models):
    """With a causal mask and positions 0..S-1, tree_forward gives the model's own logits."""
    target, _, tok = models
    idx = _ids(tok, "Leo was a little dog who lived near the house.")
    s = idx.shape[1]
    logits, hidden = tree_forward(target, idx, torch.arange(s), torch.ones(s, s, dtype=torch.bool).tril())
    with torch.no_grad():
        assert torch.allclose(logits, target(idx)[0], atol=1e-4)
    assert hidden.shape == (s, target.cfg.d_model)


def test_tree_branches_do_not_see_each_other(models):
    """A branch's logits equal those of the plain sequence prefix ++ that branch (the mask isolates siblings)."""
    target, _, tok = models
    idx = _ids(tok, "Mia liked to")
    n = idx.shape[1]
    tree = [(0,), (1,), (0, 0)]
    nodes = torch.tensor([[7, 9, 11]])
    mask = torch.zeros(n + 3, n + 3, dtype=torch.bool)
    mask[:n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
    mask[n:, :n] = True
    mask[n:, n:] = tree_attention_mask(tree)
    positions = torch.cat([torch.arange(n), torch.tensor([n, n, n + 1])])
    with torch.no_grad():
        logits, _ = tree_forward(target, torch.cat([idx, nodes], 1), positions, mask)
        branch = target(torch.cat([idx, torch.tensor([[7, 11]])], 1))[0]
        sibling = target(torch.cat([idx, torch.tensor([[9]])], 1))[0]
    assert torch.allclose(logits[n + 2], branch[-1], atol=1e-4)
    assert torch.allclose(logits[n + 1], sibling[-1], atol=1e-4)


def test_medusa_generate_equals_greedy_and_shipped_heads_help(models):
    """Medusa with tree verification emits the target's greedy tokens; the shipped heads give > 1.3 tokens/pass,
    untrained (zero) heads only repeat the lm_head's guess."""
    target, _, tok = models
    heads, recipe = load_medusa_heads()
    assert recipe["steps"] > 0 and len(heads.layers) == 4
    idx = _ids(tok, "Once upon a time, there was a")
    ref = model.generate(target, idx, 40, temperature=0)
    out, st = medusa_generate(target, heads, idx, 40)
    assert torch.equal(out, ref) and st.new_tokens == 40
    assert st.tokens_per_pass > 1.3
    out0, _ = medusa_generate(target, MedusaHeads(target.cfg.d_model, 4), idx, 8)
    assert torch.equal(out0, ref[:, :idx.shape[1] + 8])


def test_train_medusa_heads_learns(models):
    """A few steps on the frozen target lower the heads' loss and leave the target untouched."""
    target, _, tok = models
    before = {k: v.clone() for k, v in target.state_dict().items()}
    heads, losses = train_medusa_heads(target, tok, n_heads=2, steps=6, batch_size=2, seq_len=32, lr=1e-2,
                                       corpus_chars=5_000)
    assert losses[-1] < losses[0]
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())
    assert heads(torch.zeros(3, target.cfg.d_model), target.lm_head).shape == (2, 3, target.cfg.vocab_size)


# ----------------------------------------------------------------------------- the chi-square helper

def test_chi_square_gof_against_closed_forms():
    """p-values: dof 2 has survival exp(-x/2); dof 1 has erfc(sqrt(x/2))."""
    counts, probs = torch.tensor([30.0, 50.0, 20.0]), torch.tensor([0.3, 0.4, 0.3])
    stat, dof, p = chi_square_gof(counts, probs)
    assert stat == pytest.approx(0 + 100 / 40 + 100 / 30) and dof == 2
    assert p == pytest.approx(math.exp(-stat / 2), rel=1e-9)
    stat, dof, p = chi_square_gof(torch.tensor([60.0, 40.0]), torch.tensor([0.5, 0.5]))
    assert dof == 1 and p == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-9)
    stat, dof, _ = chi_square_gof(torch.tensor([50.0, 45.0, 3.0, 2.0]), torch.tensor([0.5, 0.4, 0.06, 0.04]))
    assert dof == 2                                                   # the two small bins are pooled


# ----------------------------------------------------------------------------- plots

def test_plots_draw(drawn):
    drawn(plot_draft_verify_schematic(4, 2), min_artists=10, title="draft-and-verify")
    drawn(plot_tree_mask(), min_artists=1, title="Tree attention")
    drawn(plot_expected_tokens([(0.8, 4, 3.2)]), min_artists=5)


# ----------------------------------------------------------------------------- bad input

def test_input_checks(models):
    target, draft, tok = models
    idx = _ids(tok, "Sam")
    p = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match="alpha must be"):
        expected_tokens_per_step(1.5, 3)
    with pytest.raises(ValueError, match="gamma must be"):
        expected_tokens_per_step(0.5, -1)
    with pytest.raises(ValueError, match="c must be"):
        expected_speedup(0.5, 3, -1)
    with pytest.raises(ValueError, match="1-D of the same length"):
        accept_or_resample(p, torch.tensor([1.0]), 0, 0.5)
    with pytest.raises(ValueError, match="x must be a token id"):
        accept_or_resample(p, p, 2, 0.5)
    with pytest.raises(ValueError, match="u must lie"):
        accept_or_resample(p, p, 0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        acceptance_probability(p, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="GPT models"):
        speculative_generate(target, "draft", idx, 4)
    with pytest.raises(ValueError, match="share a vocabulary"):
        speculative_generate(target, model.GPT(model.tiny_config("test")), idx, 4)
    with pytest.raises(ValueError, match="shape \\(1, seq\\)"):
        speculative_generate(target, draft, idx.repeat(2, 1), 4)
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        speculative_generate(target, draft, idx, 0)
    with pytest.raises(ValueError, match="exceed max_seq_len"):
        speculative_generate(target, draft, idx, 300)
    with pytest.raises(ValueError, match="temperature must be"):
        speculative_generate(target, draft, idx, 4, temperature=-1)
    with pytest.raises(ValueError, match="generator must be"):
        speculative_generate(target, draft, idx, 4, generator=0)
    with pytest.raises(ValueError, match="gamma must be"):
        speculative_generate(target, draft, idx, 4, gamma=0)
    with pytest.raises(ValueError, match="tokens must be a list"):
        prompt_lookup_draft("abc")
    with pytest.raises(ValueError, match="max_ngram must be"):
        prompt_lookup_draft([1, 2], max_ngram=0)
    with pytest.raises(ValueError, match="num_draft must be"):
        prompt_lookup_generate(target, idx, 4, num_draft=0)
    with pytest.raises(ValueError, match="init_token must be"):
        jacobi_decode(target, idx, 4, init_token=512)
    with pytest.raises(ValueError, match="max_iters must be"):
        jacobi_decode(target, idx, 4, max_iters=0)
    with pytest.raises(ValueError, match="tree must be"):
        tree_attention_mask([])
    with pytest.raises(ValueError, match="before its parent"):
        tree_attention_mask([(0, 0), (0,)])
    with pytest.raises(ValueError, match="bool mask"):
        tree_forward(target, idx, torch.arange(1), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="heads must be"):
        medusa_generate(target, None, idx, 4)
    with pytest.raises(ValueError, match="deep but there are"):
        medusa_generate(target, MedusaHeads(128, 2), idx, 4)
    with pytest.raises(ValueError, match="n_heads must be"):
        MedusaHeads(128, 0)
    with pytest.raises(ValueError, match="steps must be"):
        train_medusa_heads(target, tok, steps=0)
    with pytest.raises(ValueError, match="target must be a GPT"):
        train_medusa_heads(None, tok)
    with pytest.raises(ValueError, match="lr must be"):
        train_medusa_heads(target, tok, lr=0)
    with pytest.raises(ValueError, match="probability vector"):
        chi_square_gof(torch.tensor([1.0, 2.0]), torch.tensor([0.7, 0.7]))
    with pytest.raises(ValueError, match="1-D of one length"):
        chi_square_gof(torch.tensor([1.0]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="too few samples"):
        chi_square_gof(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="gamma >= 1"):
        plot_draft_verify_schematic(0, 0)
