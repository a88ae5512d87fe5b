"""Tests for llminfra_lab.model: each part against PyTorch's own op or a plainly written reference."""
import math

import pytest
import torch
import torch.nn.functional as F

from llminfra_lab.model import (
    GPT,
    MLP,
    TINY_CONFIGS,
    Attention,
    GPTConfig,
    KVCache,
    RMSNorm,
    apply_rope,
    causal_attention,
    filter_logits,
    generate,
    load_pretrained,
    rope_frequencies,
    save_pretrained,
    tiny_config,
)
from llminfra_lab.tokenizer import BPETokenizer

torch.set_num_threads(1)
SMALL = GPTConfig(vocab_size=97, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=64, max_seq_len=40)


@pytest.fixture(scope="module")
def model():
    return GPT(SMALL, seed=0).eval()


def ids(batch, seq, seed=0, vocab=97):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- parts vs PyTorch

@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (4, 2), (4, 1), (6, 3)])
def test_attention_equals_sdpa(n_head, n_kv_head):
    """causal_attention equals torch.nn.functional.scaled_dot_product_attention(is_causal=True),
    with grouped-query heads expanded by repeat_interleave for the reference."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, n_head, 9, 16, generator=g)
    k, v = torch.randn(2, 2, n_kv_head, 9, 16, generator=g)
    group = n_head // n_kv_head
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                         is_causal=True)
    torch.testing.assert_close(causal_attention(q, k, v), ref, rtol=1e-5, atol=1e-5)


def test_attention_with_past_keys_equals_sdpa_with_mask():
    """Queries that are the last T of S positions: SDPA with an explicit boolean mask (key j visible to
    query i iff j <= S - T + i), built with plain loops."""
    g = torch.Generator().manual_seed(2)
    t, s = 3, 8
    q = torch.randn(1, 4, t, 8, generator=g)
    k, v = torch.randn(2, 1, 2, s, 8, generator=g)
    mask = torch.tensor([[j <= s - t + i for j in range(s)] for i in range(t)])
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), attn_mask=mask)
    torch.testing.assert_close(causal_attention(q, k, v), ref, rtol=1e-5, atol=1e-5)


def test_attention_module_equals_reference_built_from_its_weights():
    """Attention.forward = wo(SDPA(rope(wq x), rope(wk x), wv x)) computed here from the module's weights."""
    torch.manual_seed(0)
    attn = Attention(SMALL)
    x = torch.randn(2, 7, SMALL.d_model)
    cos, sin = rope_frequencies(SMALL.head_dim, 7, SMALL.rope_theta)
    h, kvh, d = SMALL.n_head, SMALL.n_kv_head, SMALL.head_dim
    q = (x @ attn.wq.weight.T).view(2, 7, h, d).transpose(1, 2)
    k = (x @ attn.wk.weight.T).view(2, 7, kvh, d).transpose(1, 2)
    v = (x @ attn.wv.weight.T).view(2, 7, kvh, d).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = F.scaled_dot_product_attention(q, k.repeat_interleave(h // kvh, 1), v.repeat_interleave(h // kvh, 1),
                                         is_causal=True)
    ref = out.transpose(1, 2).reshape(2, 7, h * d) @ attn.wo.weight.T
    torch.testing.assert_close(attn(x, cos, sin), ref, rtol=1e-5, atol=1e-5)


def test_rmsnorm_equals_torch_rms_norm():
    """RMSNorm equals torch.nn.functional.rms_norm with the same weight and eps."""
    norm = RMSNorm(24, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 24))
    x = torch.randn(3, 5, 24)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (24,), norm.weight, eps=1e-6))


def test_swiglu_mlp_formula():
    """MLP = w_down(silu(w_gate x) * w_up x) (Shazeer 2020), with silu(z) = z * sigmoid(z) written out."""
    mlp = MLP(SMALL)
    x = torch.randn(4, SMALL.d_model)
    gate = x @ mlp.w_gate.weight.T
    ref = (gate * torch.sigmoid(gate) * (x @ mlp.w_up.weight.T)) @ mlp.w_down.weight.T
    torch.testing.assert_close(mlp(x), ref)


def test_rope_equals_complex_rotation():
    """RoPE (Su et al. 2021): pair (x_i, x_{i+d/2}) as a complex number times exp(1j * pos * theta^(-2i/d))."""
    d, seq, theta = 8, 6, 10000.0
    x = torch.randn(2, seq, d, dtype=torch.float64)
    cos, sin = rope_frequencies(d, seq, theta)
    z = torch.complex(x[..., : d // 2], x[..., d // 2:])
    angle = torch.tensor([[p * theta ** (-2 * i / d) for i in range(d // 2)] for p in range(seq)], dtype=torch.float64)
    rotated = z * torch.polar(torch.ones_like(angle), angle)
    ref = torch.cat([rotated.real, rotated.imag], dim=-1).float()
    torch.testing.assert_close(apply_rope(x.float(), cos, sin), ref, rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    """<rope(q, m), rope(k, n)> depends on m - n only: shifting both positions keeps the score."""
    d = 16
    cos, sin = rope_frequencies(d, 64, 10000.0)
    q, k = torch.randn(2, d, dtype=torch.float64).float()

    def score(m, n):
        qm = apply_rope(q[None], cos[m:m + 1], sin[m:m + 1])
        kn = apply_rope(k[None], cos[n:n + 1], sin[n:n + 1])
        return (qm * kn).sum()
    torch.testing.assert_close(score(10, 3), score(40, 33), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- the model

def test_init_is_deterministic_from_seed():
    a, b, c = GPT(SMALL, seed=3), GPT(SMALL, seed=3), GPT(SMALL, seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)


def test_tied_embeddings_share_one_tensor_and_count_once():
    m = GPT(SMALL)
    assert m.lm_head.weight is m.tok_emb.weight
    untied = GPT(GPTConfig(**{**SMALL.__dict__, "tie_embeddings": False}))
    assert untied.lm_head.weight is not untied.tok_emb.weight
    assert untied.num_params() - m.num_params() == SMALL.vocab_size * SMALL.d_model
    # the gradient of the tied matrix collects both uses
    x = ids(2, 5)
    m.loss(x, x).backward()
    assert m.tok_emb.weight.grad is not None and m.lm_head.weight.grad is m.tok_emb.weight.grad


def test_parameter_count_closed_form():
    """num_params = V d + L (d (h + 2 kv) hd + h hd d + 3 d f + 2 d) + d for tied embeddings."""
    c = SMALL
    per_layer = c.d_model * (c.n_head + 2 * c.n_kv_head) * c.head_dim + c.n_head * c.head_dim * c.d_model
    per_layer += 3 * c.d_model * c.d_ff + 2 * c.d_model
    assert GPT(c).num_params() == c.vocab_size * c.d_model + c.n_layer * per_layer + c.d_model


def test_initial_loss_is_near_uniform(model):
    """At init the logits are small, so the cross-entropy is close to ln(vocab)."""
    x = ids(4, 20)
    assert abs(model.loss(x, ids(4, 20, seed=1)).item() - math.log(SMALL.vocab_size)) < 0.1


def test_loss_equals_cross_entropy_of_logits(model):
    x, y = ids(2, 10), ids(2, 10, seed=5)
    y[0, 3] = -100
    logits = model(x)
    kept = [(b, t) for b in range(2) for t in range(10) if y[b, t] != -100]
    ref = sum(-torch.log_softmax(logits[b, t], -1)[y[b, t]] for b, t in kept) / len(kept)
    torch.testing.assert_close(model.loss(x, y), ref)


def test_kv_cached_forward_equals_uncached(model):
    """Prefill in chunks, then decode one token at a time: logits equal the full forward pass."""
    x = ids(3, 30, seed=7)
    full = model(x)
    cache = KVCache.empty(SMALL, batch=3)
    parts = [model(x[:, :11], cache), model(x[:, 11:20], cache)]
    parts += [model(x[:, t:t + 1], cache) for t in range(20, 30)]
    assert cache.length == 30
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_forward_is_causal(model):
    """Changing a later token never changes earlier logits."""
    x = ids(1, 12)
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % SMALL.vocab_size
    torch.testing.assert_close(model(x)[:, :8], model(y)[:, :8])


# ----------------------------------------------------------------------------- generation

def test_greedy_equals_plain_argmax_loop(model):
    """temperature=0 equals: repeat { logits = model(all tokens); append argmax of the last row }."""
    prompt = ids(2, 4, seed=9)
    seq = prompt.clone()
    with torch.no_grad():
        for _ in range(12):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, prompt, 12, temperature=0), seq)
    assert torch.equal(generate(model, prompt, 12, temperature=0, use_cache=False), seq)


def test_generation_reproducible_under_seed(model):
    prompt = ids(2, 3)

    def run(seed, **kw):
        return generate(model, prompt, 15, temperature=1.5, generator=torch.Generator().manual_seed(seed), **kw)
    a, b = run(0), run(0)
    assert torch.equal(a, b) and torch.equal(a[:, :3], prompt)
    assert not torch.equal(a, run(1))
    assert torch.equal(run(5, top_k=10, top_p=0.9), run(5, top_k=10, top_p=0.9, use_cache=False))


def test_top_k_one_is_greedy(model):
    prompt = ids(1, 5)
    sampled = generate(model, prompt, 8, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, generate(model, prompt, 8, temperature=0))


def _brute_force_keep(logits, top_k, top_p):
    """Which tokens survive, by sorting and walking the list by hand: top-k first, then the nucleus
    of the renormalised survivors."""
    order = sorted(range(len(logits)), key=lambda i: -logits[i].item())
    keep = set(order[:top_k] if top_k else order)
    weights = {i: math.exp(logits[i].item()) for i in keep}
    probs = {i: w / sum(weights.values()) for i, w in weights.items()}
    if top_p is not None:
        nucleus, mass = set(), 0.0
        for i in [i for i in order if i in keep]:
            if mass >= top_p:
                break
            nucleus.add(i)
            mass += probs[i]
        keep &= nucleus
    return keep


@pytest.mark.parametrize("top_k,top_p", [(1, None), (5, None), (None, 0.5), (None, 0.9), (7, 0.8), (None, 1.0),
                                         (100, None)])
def test_filter_logits_against_brute_force(top_k, top_p):
    g = torch.Generator().manual_seed(11)
    for _ in range(20):
        logits = torch.randn(30, generator=g) * 2
        kept = {i for i, v in enumerate(filter_logits(logits, top_k, top_p).tolist()) if v != float("-inf")}
        assert kept == _brute_force_keep(logits, top_k, top_p)


def test_sampling_frequencies_follow_filtered_softmax():
    """With top_k=3, token frequencies over many draws approach the renormalised top-3 probabilities."""
    cfg = GPTConfig(vocab_size=8, n_layer=1, n_head=2, n_kv_head=1, d_model=8, d_ff=16, max_seq_len=4)
    m = GPT(cfg, seed=2).eval()
    with torch.no_grad():
        m.tok_emb.weight.mul_(40)                                    # sharpen the distribution
    prompt = torch.zeros(4000, 1, dtype=torch.long)
    with torch.no_grad():
        probs = torch.softmax(filter_logits(m(prompt[:1])[0, -1], top_k=3), -1)
    out = generate(m, prompt, 1, top_k=3, generator=torch.Generator().manual_seed(0))[:, 1]
    freq = torch.bincount(out, minlength=8).double() / len(out)
    assert set(out.tolist()) <= set(torch.nonzero(probs).flatten().tolist())
    torch.testing.assert_close(freq, probs.double(), atol=0.03, rtol=0)


# ----------------------------------------------------------------------------- checkpoints

def test_save_load_round_trip(tmp_path, model):
    tok = BPETokenizer.train("the cat sat on the mat. " * 20, 270, special_tokens=["<|endoftext|>"])
    recipe = {"corpus": "stories", "steps": 10, "lr": 3e-4, "seed": 0, "notes": None, "tags": ["a", 1]}
    path = save_pretrained(model, tok, tmp_path / "m.pt", recipe)
    raw = torch.load(path, weights_only=True)                        # plain contents only
    assert raw["config"]["n_layer"] == SMALL.n_layer and "lm_head.weight" not in raw["state_dict"]
    loaded, tok2 = load_pretrained(str(path))
    assert loaded.cfg == model.cfg and loaded.recipe == recipe and not loaded.training
    assert loaded.lm_head.weight is loaded.tok_emb.weight
    x = ids(2, 9)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert tok2.merges == tok.merges and tok2.encode("the cat<|endoftext|>") == tok.encode("the cat<|endoftext|>")
    _, none_tok = load_pretrained(save_pretrained(model, None, tmp_path / "n.pt", {}))
    assert none_tok is None


@pytest.mark.parametrize("name", ["target", "draft"])
def test_tiny_configs_are_the_shipped_checkpoints_shapes(name):
    """TINY_CONFIGS["target"/"draft"] are the configurations stored in the shipped checkpoints."""
    model, _ = load_pretrained(name)
    assert model.cfg == tiny_config(name)


def test_tiny_config_builds_each_config_and_applies_overrides():
    for name, fields in TINY_CONFIGS.items():
        cfg = tiny_config(name)
        assert all(getattr(cfg, k) == v for k, v in fields.items())
    assert tiny_config("test", n_layer=3).n_layer == 3
    assert tiny_config().tie_embeddings is False          # "small", the distributed chapters' model
    with pytest.raises(KeyError, match=r"unknown tiny config 'huge'; valid: \['draft', 'small', 'target', 'test'\]"):
        tiny_config("huge")
    with pytest.raises(ValueError, match=r"unknown GPTConfig fields \['n_layers'\]"):
        tiny_config("test", n_layers=3)
    with pytest.raises(ValueError, match="n_layer must be an int >= 1"):
        tiny_config("test", n_layer=0)


def test_load_pretrained_names_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match="not shipped"):
        load_pretrained("no-such-checkpoint")


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,match", [
    ({"vocab_size": 0}, "vocab_size must be an int >= 1"), ({"n_layer": -1}, "n_layer must be an int >= 1"),
    ({"n_head": 3}, r"divisible by n_head \(3\)"), ({"n_kv_head": 3}, r"multiple of n_kv_head \(3\)"),
    ({"d_model": 30, "n_head": 10, "n_kv_head": 5}, "must be even for RoPE"),
    ({"rope_theta": 0.0}, "rope_theta and norm_eps must be > 0"), ({"norm_eps": -1.0}, "rope_theta and norm_eps must be > 0"),
    ({"rope_theta": "1e4"}, "rope_theta and norm_eps must be > 0"), ({"max_seq_len": 2.5}, "max_seq_len must be an int >= 1"),
    ({"tie_embeddings": "yes"}, "tie_embeddings must be a bool"), ({"d_ff": True}, "d_ff must be an int >= 1"),
])
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**SMALL.__dict__, **kw})


def test_model_rejects_bad_input(model):
    with pytest.raises(ValueError, match="cfg must be a GPTConfig"):
        GPT({"n_layer": 2})
    with pytest.raises(ValueError, match="seed must be an int"):
        GPT(SMALL, seed=1.5)
    shape = "non-empty torch.long tensor of shape"
    for bad, match in ((torch.zeros(2, 3), shape), (torch.zeros(5, dtype=torch.long), shape),
                       (torch.zeros(1, 0, dtype=torch.long), shape), (torch.full((1, 3), 97), r"lie in \[0, 97\)"),
                       (torch.full((1, 3), -1), r"lie in \[0, 97\)"), (torch.zeros(1, 41, dtype=torch.long), "exceeds max_seq_len"),
                       ([[1, 2]], shape)):
        with pytest.raises(ValueError, match=match):
            model(bad)
    cache = KVCache.empty(SMALL, batch=2)
    with pytest.raises(ValueError, match="batch"):
        model(ids(1, 3), cache)
    model(ids(2, 38), cache)
    with pytest.raises(ValueError, match="exceed"):
        model(ids(2, 3), cache)
    with pytest.raises(ValueError, match="cache must be a KVCache"):
        model(ids(2, 3), cache="not a cache")
    with pytest.raises(ValueError, match="targets must be a tensor of idx's shape"):
        model.loss(ids(2, 3), ids(2, 4))
    with pytest.raises(ValueError, match="targets must be torch.long"):
        model.loss(ids(2, 3), ids(2, 3).float())


def test_helpers_reject_bad_input():
    head_dim = "head_dim must be an even int >= 2"
    for args, match in (((7, 10), head_dim), ((0, 10), head_dim), ((8, 0), "max_seq_len must be a positive int"),
                        ((8, 10, 0.0), "theta must be > 0"), ((8.0, 10), head_dim)):
        with pytest.raises(ValueError, match=match):
            rope_frequencies(*args)
    cos, sin = rope_frequencies(8, 5)
    with pytest.raises(ValueError, match=r"got \(1, 4, 8\), \(5, 4\)"):
        apply_rope(torch.randn(1, 4, 8), cos, sin)                    # 4 positions, 5 angles
    with pytest.raises(ValueError, match=r"bad shapes q \(1, 3, 4, 8\)"):
        causal_attention(torch.randn(1, 3, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match=r"bad shapes q \(1, 2, 5, 8\)"):
        causal_attention(torch.randn(1, 2, 5, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    for kw in ({"top_k": 0}, {"top_k": 2.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_p": "0.9"}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be None or"):
            filter_logits(torch.zeros(5), **kw)
    for args, match in (((SMALL, 0), "batch must be an int >= 1"), ((SMALL, True), "batch must be an int >= 1"),
                        (("cfg", 1), "cfg must be a GPTConfig")):
        with pytest.raises(ValueError, match=match):
            KVCache.empty(*args)


def test_generate_rejects_bad_input(model):
    p = ids(1, 3)
    bad_calls = [
        (lambda: generate("model", p, 2), "model must be a GPT"),
        (lambda: generate(model, p, -1), "max_new_tokens must be an int >= 0"),
        (lambda: generate(model, p, 1.5), "max_new_tokens must be an int >= 0"),
        (lambda: generate(model, p, 2, temperature=-1), "temperature must be a number >= 0"),
        (lambda: generate(model, p, 2, top_k=0), "top_k must be None or a positive int"),
        (lambda: generate(model, p, 2, top_p=2.0), r"top_p must be None or in \(0, 1\]"),
        (lambda: generate(model, p, 2, generator=0), "generator must be a torch.Generator or None"),
        (lambda: generate(model, p, 38), "3 \\+ 38 tokens exceed max_seq_len 40"),
        (lambda: generate(model, p.float(), 2), "non-empty torch.long tensor"),
    ]
    for call, match in bad_calls:
        with pytest.raises(ValueError, match=match):
            call()


def test_checkpoint_functions_reject_bad_input(tmp_path, model):
    with pytest.raises(ValueError, match="model must be a GPT"):
        save_pretrained("model", None, tmp_path / "a.pt", {})
    with pytest.raises(ValueError, match="tokenizer must be a BPETokenizer"):
        save_pretrained(model, "tokenizer", tmp_path / "a.pt", {})
    with pytest.raises(ValueError, match=r"recipe\['weights'\] holds a Tensor"):
        save_pretrained(model, None, tmp_path / "a.pt", {"weights": torch.zeros(2)})
    with pytest.raises(ValueError, match="recipe keys must be str"):
        save_pretrained(model, None, tmp_path / "a.pt", {1: "non-str key"})
    with pytest.raises(ValueError, match="recipe must be a dict"):
        save_pretrained(model, None, tmp_path / "a.pt", "recipe")
    # a str subclass that weights_only loading would refuse
    with pytest.raises(ValueError, match=r"recipe\['torch'\] holds a TorchVersion"):
        save_pretrained(model, None, tmp_path / "a.pt", {"torch": torch.__version__})
    with pytest.raises(ValueError, match=".pt"):
        save_pretrained(model, None, tmp_path / "a.bin", {})
    for bad in (None, 3, ""):
        with pytest.raises(ValueError, match="name_or_path must be a checkpoint name or a .pt path"):
            load_pretrained(bad)
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_pretrained(str(tmp_path / "missing.pt"))
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="checkpoint"):
        load_pretrained(str(tmp_path / "other.pt"))
