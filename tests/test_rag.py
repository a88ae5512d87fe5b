"""Chapter 17 (retrieval-augmented generation): parsing, chunking, BM25 against rank_bm25,
fusion, MMR, the glossary graph, retrieval metrics against scikit-learn and brute force,
RAGAS-style metrics on hand-worked examples, the shipped embeddings against a recompute."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import rag
from llminfra_lab.exercises import rag as rag_exercises  # noqa: F401  (registers the lab's checkers)
from llminfra_lab.shipped import load_json

PAGE = """---
jupytext:
  text_representation:
    format_name: myst
---

# A Page

**中文标题**

Intro with a {term}`KV cache` and {term}`GQA <grouped-query attention>` {cite}`someone2024`.

## First part

Alpha beta gamma.

```{code-cell} python3
:tags: [remove-input]
print("never indexed")
```

```python
also_dropped = True
```

### A subsection

Delta epsilon.

## Second part

:::{admonition} Try it
:class: tip
Zeta eta theta.
:::
"""


def test_parse_markdown_cuts_at_headings_and_strips_machinery():
    secs = rag.parse_markdown(PAGE, "page")
    assert [(s.title, s.level) for s in secs] == [("A Page", 1), ("First part", 2), ("Second part", 2)]
    assert "KV cache and GQA" in secs[0].text and "cite" not in secs[0].text and "jupytext" not in secs[0].text
    assert "never indexed" not in secs[1].text and "also_dropped" not in secs[1].text
    assert "### A subsection" in secs[1].text and "Delta epsilon." in secs[1].text
    assert secs[2].text == "Zeta eta theta." and secs[1].id == "page#first-part"
    deeper = rag.parse_markdown(PAGE, "page", max_level=3)
    assert [s.title for s in deeper] == ["A Page", "First part", "A subsection", "Second part"]


def test_parse_html_agrees_with_parse_markdown_through_markdown_it():
    """Render a Markdown page to HTML with markdown-it-py (a peer parser); parse_html must find
    the same sections with the same words as parse_markdown."""
    from markdown_it import MarkdownIt

    md = "# Title\n\nOne two.\n\n## Part A\n\nThree *four* five.\n\n- six\n- seven\n\n## Part B\n\nEight.\n"
    html = "<html><head><style>x{}</style><script>var no = 1;</script></head><body><nav>menu</nav>" \
           + MarkdownIt().render(md) + "</body></html>"
    from_md, from_html = rag.parse_markdown(md, "d"), rag.parse_html(html, "d")
    assert [s.title for s in from_md] == [s.title for s in from_html] == ["Title", "Part A", "Part B"]
    for a, b in zip(from_md, from_html):
        assert a.text.replace("*", "").replace("- ", "").split() == b.text.split()


def test_shipped_snapshot_and_question_set():
    """The snapshot names its date; >= 60 questions, each answered by a section of the snapshot
    that contains its evidence verbatim."""
    manifest = rag.book_manifest()
    assert manifest["date"] and len(manifest["files"]) >= 10 and "glossary" in manifest["files"]
    text = {s.id: " ".join(s.text.split()).lower() for s in rag.load_book()}
    questions = rag.load_questions()
    assert len(questions) >= 60 and len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert q["sections"] and all(s in text for s in q["sections"]), q
        assert any(" ".join(q["evidence"].split()).lower() in text[s] for s in q["sections"]), q["id"]


def test_fixed_chunks_cover_every_word_and_overlap():
    secs = rag.load_book()[:6]
    words = [w for s in secs for w in s.text.split()]
    plain = rag.fixed_chunks(secs, 50)
    assert [w for c in plain for w in c.text.split()] == words
    over = rag.fixed_chunks(secs, 50, 10)
    first_doc = [c for c in over if c.doc == secs[0].doc]
    for a, b in zip(first_doc, first_doc[1:]):
        assert a.text.split()[-10:] == b.text.split()[:10]
    assert all(len(c.text.split()) <= 50 for c in over)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["alpha", "beta.", "gamma", "\n\n", "\n### Head\n", "delta. Epsilon"]),
                min_size=1, max_size=120), st.integers(3, 40))
def test_recursive_chunks_respect_size_and_keep_every_word(tokens, max_words):
    text = " ".join(tokens)
    sec = rag.Section("d", "T", 2, text)
    chunks = rag.recursive_chunks([sec], max_words)
    assert all(len(c.text.split()) <= max_words for c in chunks)
    assert [w for c in chunks for w in c.text.split()] == [w for w in text.split()]


def test_semantic_chunks_cut_at_the_topic_change():
    """Two topics with orthogonal fake embeddings: the cut falls exactly between them."""
    text = "Apples are red. Apples are sweet. Apples grow on trees. Ships sail far. Ships carry cargo."
    sec = rag.Section("d", "T", 2, text)

    def embed(sents):
        return np.array([[1.0, 0.0] if "Apples" in s else [0.0, 1.0] for s in sents])

    chunks = rag.semantic_chunks([sec], embed, quantile=0.5)
    assert [c.text for c in chunks] == ["Apples are red. Apples are sweet. Apples grow on trees.",
                                        "Ships sail far. Ships carry cargo."]
    assert rag.split_sentences("One. Two! 3 is a number.\n\nNew para") == ["One.", "Two!", "3 is a number.", "New para"]


def test_bm25_equals_rank_bm25_on_the_book():
    """BM25 scores equal the rank-bm25 package's Okapi BM25 on the same corpus (k1=1.5,
    b=0.75), including its epsilon idf floor (rank_bm25 0.2.2, BM25Okapi; Robertson et al.,
    TREC-3 1994 for the formula)."""
    from rank_bm25 import BM25Okapi

    chunks, _ = rag.load_index()
    corpus = [rag.tokenize(c.indexed) for c in chunks]
    ours, ref = rag.BM25(corpus, k1=1.5, b=0.75), BM25Okapi(corpus, k1=1.5, b=0.75)
    assert ours.avgdl == ref.avgdl and math.isclose(ours.average_idf, ref.average_idf, rel_tol=1e-12)
    for q in rag.load_questions()[:30]:
        toks = rag.tokenize(q["question"])
        assert np.abs(ours.scores(toks) - ref.get_scores(toks)).max() <= 1e-9


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.1, 3.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_bm25_equals_rank_bm25_with_floor(seed, k1, b, epsilon):
    """Random corpora where common terms have negative idf, floored to epsilon x mean idf (rank_bm25)."""
    from rank_bm25 import BM25Okapi

    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(rng.randint(2, 12))]
    corpus = [[rng.choice(vocab[:3]) if rng.random() < 0.5 else rng.choice(vocab) for _ in range(rng.randint(1, 20))]
              for _ in range(rng.randint(1, 25))]
    ours, ref = rag.BM25(corpus, k1, b, epsilon), BM25Okapi(corpus, k1=k1, b=b, epsilon=epsilon)
    for _ in range(3):
        q = [rng.choice(vocab + ["unseen"]) for _ in range(rng.randint(1, 6))]
        assert np.abs(ours.scores(q) - ref.get_scores(q)).max() <= 1e-9


def test_top_k_breaks_ties_by_index():
    assert rag.top_k(np.array([1.0, 3.0, 3.0, 2.0]), 3) == [1, 2, 3]


def test_rrf_k60_hand_worked():
    """Reciprocal rank fusion with k=60 (Cormack, Clarke and Buettcher, SIGIR 2009):
    score(d) = sum over rankings of 1 / (60 + rank)."""
    fused = dict(rag.rrf([[7, 3, 5], [3, 9]], k=60))
    assert math.isclose(fused[3], 1 / 62 + 1 / 61) and math.isclose(fused[7], 1 / 61)
    assert math.isclose(fused[5], 1 / 63) and math.isclose(fused[9], 1 / 62)
    assert [d for d, _ in rag.rrf([[7, 3, 5], [3, 9]])] == [3, 7, 9, 5]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.permutations(list(range(8))), min_size=1, max_size=4), st.integers(1, 100))
def test_rrf_brute_force_and_order_invariance(rankings, k):
    brute = {d: sum(1 / (k + r.index(d) + 1) for r in rankings) for d in range(8)}
    fused = rag.rrf(rankings, k)
    assert all(math.isclose(s, brute[d]) for d, s in fused)
    assert [s for _, s in fused] == sorted((s for _, s in fused), reverse=True)
    assert dict(rag.rrf(rankings[::-1], k)) == pytest.approx(dict(fused), rel=1e-12)


def test_weighted_fusion_and_minmax():
    a, b = np.array([0.0, 5.0, 10.0]), np.array([1.0, 1.0, 1.0])
    assert np.allclose(rag.minmax(a), [0, 0.5, 1]) and np.allclose(rag.minmax(b), 0)
    assert np.allclose(rag.weighted_fusion([a, np.array([2.0, 0.0, 1.0])], [0.25, 0.75]), [0.75, 0.125, 0.625])


def _mmr_brute(q, vecs, cand, k, lam):
    picked = []
    for _ in range(min(k, len(cand))):
        best, best_v = None, -np.inf
        for c in cand:
            if c in picked:
                continue
            red = max((float(vecs[c] @ vecs[p]) for p in picked), default=0.0)
            v = lam * float(vecs[c] @ q) - (1 - lam) * red
            if v > best_v:
                best, best_v = c, v
        picked.append(best)
    return picked


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.0, 1.0))
def test_mmr_equals_brute_force(seed, lam):
    """Maximal marginal relevance (Carbonell and Goldstein 1998), written plainly."""
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(12, 5))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q = vecs[0] + 0.1 * rng.normal(size=5)
    cand = [int(i) for i in rng.permutation(12)[:9]]
    assert rag.mmr(q, vecs, cand, 5, lam) == _mmr_brute(q, vecs, cand, 5, lam)


def test_mmr_lambda_one_is_relevance_order_and_zero_diversifies():
    vecs = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    q = np.array([1.0, 0.0])
    assert rag.mmr(q, vecs, [0, 1, 2], 3, lam=1.0) == [0, 1, 2]
    assert rag.mmr(q, vecs, [0, 1, 2], 2, lam=0.3) == [0, 2]      # the duplicate loses to the new direction


def test_glossary_graph():
    terms = rag.parse_glossary()
    glossary = rag.book_pages()["glossary"]
    inside = glossary.split("```{glossary}")[1].split("```")[0]
    names = [line for line in inside.splitlines() if line and not line[0].isspace() and not line.startswith(":")]
    assert [t.name for t in terms] == names
    gqa = next(t for t in terms if t.name == "grouped-query attention")
    assert "GQA" in gqa.aliases and gqa.chinese.startswith("分组查询注意力")
    graph = rag.entity_graph(terms)
    assert all(a in graph[b] for a in graph for b in graph[a])
    assert "KV cache" in graph["grouped-query attention"]
    assert rag.find_entities("Does GQA shrink the KV cache?", terms) == ["grouped-query attention", "KV cache"]
    expanded = rag.expand_query("What is GQA?", graph, terms, max_neighbours=2)
    assert expanded.startswith("What is GQA? ") and len(expanded.split("? ")[1]) > 0


def test_retrieval_metrics_hand_worked_and_against_sklearn():
    ranked = ["a", "b", "c", "d"]
    assert rag.recall_at_k(ranked, ["c", "z"], 3) == 0.5 and rag.recall_at_k(ranked, ["c"], 2) == 0
    assert rag.reciprocal_rank(ranked, ["c", "d"]) == 1 / 3 and rag.reciprocal_rank(ranked, ["z"]) == 0
    assert math.isclose(rag.ndcg_at_k(ranked, ["b"], 10), 1 / math.log2(3))
    from sklearn.metrics import ndcg_score

    rng = random.Random(0)
    for _ in range(20):
        items = [f"s{i}" for i in range(10)]
        rng.shuffle(items)
        relevant = rng.sample([f"s{i}" for i in range(10)], rng.randint(1, 3))
        k = rng.choice([3, 5, 10])
        true = np.array([[1.0 if it in relevant else 0.0 for it in items]])
        pred = np.array([[10.0 - i for i in range(10)]])
        assert math.isclose(rag.ndcg_at_k(items, relevant, k), ndcg_score(true, pred, k=k), rel_tol=1e-9)


def test_ragas_metrics_hand_worked():
    """RAGAS definitions (Es et al. 2023; docs.ragas.io): faithfulness = supported claims /
    claims; context precision@K = sum_k precision@k v_k / relevant chunks in the top K."""
    assert rag.faithfulness([True, True, False, True]) == 0.75
    assert math.isclose(rag.context_precision([0, 0, 1, 1, 0]), (1 / 3 + 2 / 4) / 2)
    assert rag.context_precision([1, 0, 0]) == 1.0 and rag.context_precision([0, 0]) == 0.0
    assert math.isclose(rag.context_precision([1, 0, 1]), (1 + 2 / 3) / 2)
    context = ["The H100 SXM has 80 GB of HBM at 3.35 TB/s.", "Warps have 32 threads."]
    assert rag.supported("The H100 has 80 GB of HBM.", context)
    assert not rag.supported("The H100 has 141 GB of HBM3e.", context)


def test_shipped_index_and_maxsim():
    chunks, vecs = rag.load_index()
    assert vecs.dtype == np.float32 and vecs.shape == (len(chunks), 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
    assert math.isclose(rag.maxsim(q, d), sum(max(float(qi @ dj) for dj in d) for qi in q))
    assert np.allclose(rag.cosine_scores(vecs[3], vecs)[0], vecs @ vecs[3])


def test_book_index_retrievers_and_evaluation():
    index = rag.BookIndex.shipped()
    questions = rag.load_questions()[:8]
    qvecs = np.stack([index.vectors[[i for i, c in enumerate(index.chunks) if c.section == q["sections"][0]][0]]
                      for q in questions])      # a chunk of the answering section stands in for the query's vector
    for method in rag.RETRIEVERS:
        got = index.retrieve(method, questions[0]["question"], qvecs[0], k=7)
        assert len(got) == len(set(got)) == 7
    table = rag.evaluate_retrievers(index, questions, qvecs, methods=("dense", "bm25"))
    assert table["dense"]["recall@1"] == 1.0 and 0 < table["bm25"]["MRR"] <= 1
    fake = lambda texts: [np.eye(4)[[len(t) % 4]] for t in texts]   # noqa: E731
    assert sorted(index.rerank_maxsim("q", [1, 2, 3], k=3, token_fn=fake)) == [1, 2, 3]


@pytest.mark.slow
def test_recomputed_embeddings_equal_the_shipped_ones():
    """Re-embed a spread of the shipped chunks with the offline all-MiniLM-L6-v2: the vectors
    match within float32 noise across CPUs (cosine > 0.9999, max abs difference < 2e-4)."""
    chunks, vecs = rag.load_index()
    pick = list(range(0, len(chunks), max(1, len(chunks) // 40)))
    fresh = rag.embed([chunks[i].indexed for i in pick])
    assert (np.abs(fresh - vecs[pick]).max()) < 2e-4
    assert ((fresh * vecs[pick]).sum(1) > 0.9999).all()
    toks = rag.token_vectors(["late interaction", "a much longer text about kv caches"])
    assert toks[0].shape[1] == 384 and len(toks[1]) > len(toks[0])
    assert np.allclose(np.linalg.norm(toks[1], axis=1), 1, atol=1e-5)


def test_shipped_results():
    res = rag.load_results()
    assert res["n_questions"] == len(rag.load_questions())
    for name in ("bm25", "dense", "rrf", "weighted", "bm25+graph", "rrf+mmr", "rrf+maxsim"):
        row = res["retrievers"][name]
        assert 0 <= row["recall@1"] <= row["recall@5"] <= row["recall@10"] <= 1 and 0 <= row["MRR"] <= 1
    assert res["retrievers"]["dense (faiss flat)"] == pytest.approx(res["retrievers"]["dense"], abs=0.02)
    assert [r["size"] for r in res["chunk_sweep"]] == sorted(r["size"] for r in res["chunk_sweep"])
    bench = load_json("rag/bm25_bench.json")
    assert bench["max_abs_diff"] <= 1e-9 and bench["query_speedup"] > 1


def test_plots(drawn):
    drawn(rag.plot_pipeline(), 10, title="retrieval-augmented")
    drawn(rag.plot_entity_graph("KV cache", hops=1), 3)
    drawn(rag.plot_retrievers(), 5)
    drawn(rag.plot_chunk_size(), 2)


def test_input_checks():
    with pytest.raises(ValueError, match="overlap must be smaller"):
        rag.fixed_chunks([], 10, 10)
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        rag.fixed_chunks([], 0)
    with pytest.raises(ValueError, match="max_words must be an int >= 1"):
        rag.recursive_chunks([], 0)
    with pytest.raises(ValueError, match="separators must name"):
        rag.recursive_chunks([], 5, separators=())
    with pytest.raises(ValueError, match="quantile must be in"):
        rag.semantic_chunks([], lambda s: s, quantile=2)
    with pytest.raises(ValueError, match="chunks must not be empty"):
        rag.chunk_stats([])
    with pytest.raises(ValueError, match="text must be a str"):
        rag.clean_markdown(3)
    with pytest.raises(ValueError, match="html must be a str"):
        rag.parse_html(None, "d")
    with pytest.raises(ValueError, match="max_level must be an int >= 1"):
        rag.parse_markdown("# a", "d", max_level=0)
    with pytest.raises(ValueError, match="corpus must hold"):
        rag.BM25([])
    with pytest.raises(ValueError, match="need k1 >= 0"):
        rag.BM25([["a"]], b=2)
    with pytest.raises(ValueError, match="list of tokens"):
        rag.BM25([["a"]]).scores("a b")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        rag.top_k(np.zeros(3), 0)
    with pytest.raises(ValueError, match="rankings must hold"):
        rag.rrf([])
    with pytest.raises(ValueError, match="lists a document twice"):
        rag.rrf([[1, 1]])
    with pytest.raises(ValueError, match="one weight per score"):
        rag.weighted_fusion([np.zeros(2)], [0.5, 0.5])
    with pytest.raises(ValueError, match="same documents"):
        rag.weighted_fusion([np.zeros(2), np.zeros(3)], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights must be >= 0"):
        rag.weighted_fusion([np.zeros(2)], [-1])
    with pytest.raises(ValueError, match="lam must be in"):
        rag.mmr(np.zeros(2), np.zeros((2, 2)), [0], 1, lam=1.5)
    with pytest.raises(ValueError, match="max_neighbours must be an int >= 1"):
        rag.expand_query("x", max_neighbours=0)
    with pytest.raises(KeyError, match="not a glossary term"):
        rag.plot_entity_graph("no such term")
    with pytest.raises(ValueError, match="relevant must name"):
        rag.recall_at_k(["a"], [], 1)
    with pytest.raises(ValueError, match="lists an item twice"):
        rag.reciprocal_rank(["a", "a"], ["a"])
    with pytest.raises(ValueError, match="one ranking per question"):
        rag.score_run([], [])
    with pytest.raises(ValueError, match="one verdict per claim"):
        rag.faithfulness([])
    with pytest.raises(ValueError, match="one judgement per retrieved chunk"):
        rag.context_precision([])
    with pytest.raises(ValueError, match="threshold must be in"):
        rag.supported("a", ["a"], threshold=0)
    with pytest.raises(ValueError, match="texts must be a list of str"):
        rag.embed("one string")
    with pytest.raises(ValueError, match="texts must be a list of str"):
        rag.token_vectors("one string")
    with pytest.raises(ValueError, match="equal d"):
        rag.maxsim(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dimensions differ"):
        rag.cosine_scores(np.zeros(3), np.zeros((2, 4)))
    with pytest.raises(FileNotFoundError, match="embed_book.py"):
        rag.load_index("/nonexistent")
    with pytest.raises(FileNotFoundError, match="rag_eval.py"):
        rag.load_results("/nonexistent.json")
    chunks, vecs = rag.load_index()
    with pytest.raises(ValueError, match="one vector per chunk"):
        rag.BookIndex(chunks, vecs[:3])
    index = rag.BookIndex(chunks, vecs)
    with pytest.raises(KeyError, match="unknown retriever"):
        index.retrieve("nope", "q", vecs[0])
    with pytest.raises(ValueError, match="one query vector per question"):
        rag.evaluate_retrievers(index, rag.load_questions()[:2], vecs[:1])
