"""Tests for llminfra_lab.tokenizer against the Hugging Face `tokenizers` BPE trainer and encoder."""
import json
import unicodedata

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab.data import corpus, stories
from llminfra_lab.tokenizer import BPETokenizer, bpe_merge_step, bpe_merge_table, byte_order, pretokenize

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402


def gpt2_byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, written out here independently of the module."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


B2U = gpt2_byte_to_unicode()


def as_hf_string(token: bytes) -> str:
    return "".join(B2U[b] for b in token)


def hf_train(text, vocab_size, special_tokens=(), min_frequency=0):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return tok


def hf_merges(tok) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def assert_same_as_hf(text, vocab_size, special_tokens=(), min_frequency=0, probe=None):
    ref = hf_train(text, vocab_size, special_tokens, min_frequency)
    ours = BPETokenizer.train(text, vocab_size, special_tokens, min_frequency)
    mine = [(as_hf_string(ours.vocab[a]), as_hf_string(ours.vocab[b])) for a, b in ours.merges]
    assert mine == hf_merges(ref)
    vocab = {(tok.decode() if i < len(special_tokens) else as_hf_string(tok)): i for i, tok in enumerate(ours.vocab)}
    assert vocab == ref.get_vocab()
    probe = text[:3000] if probe is None else probe
    assert ours.encode(probe) == ref.encode(probe).ids
    return ours


MIXED = corpus("stories", 150_000, 1) + corpus("json", 150_000, 1) + corpus("arithmetic", 100_000, 1)
UNICODE = ("Grüße aus Köln! 東京は晴れ。 Привет, мир… naïve café—résumé 12,345.67 ½ ² 🙂🙃 "
           "don't I'll we've\t\ttabs\n\n  two  spaces\u00a0nbsp ") * 40


@pytest.mark.parametrize("text,vocab_size,specials,min_freq", [
    (stories(300_000, 0), 700, (), 0),
    (corpus("json", 200_000, 0), 600, ("<|endoftext|>",), 0),
    (corpus("arithmetic", 200_000, 0), 400, (), 0),
    (MIXED, 1024, ("<|endoftext|>", "<pad>"), 0),
    (MIXED, 1024, (), 40),
    (UNICODE, 900, ("<s>",), 2),
])
def test_same_merges_as_hf_tokenizers(text, vocab_size, specials, min_freq):
    """Same merges (in order), same vocabulary ids and same encodings as the Hugging Face `tokenizers`
    BpeTrainer with a ByteLevel pre-tokenizer and byte alphabet (tokenizers/src/models/bpe/trainer.rs)."""
    assert_same_as_hf(text, vocab_size, specials, min_freq)


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="ab c\n", max_size=300), extra=st.integers(0, 40), min_freq=st.sampled_from([0, 2, 5]))
def test_same_merges_as_hf_on_tiny_alphabets(text, extra, min_freq):
    """Tiny alphabets force many equal counts and repeated token strings ("ab"+"c" and "a"+"bc"):
    the tie-breaking and bookkeeping of `tokenizers`' BpeTrainer must be reproduced exactly."""
    assert_same_as_hf(text, 256 + extra, (), min_freq, probe=text)


def test_tie_breaking_on_a_worked_example():
    """"xy yx" pre-tokenizes to "xy" and " yx": pairs (x,y), (space,y) and (y,x) all occur once. Ties go
    to the smallest (left id, right id); the space byte's id (it is 'Ġ' in GPT-2's table) is above the
    letters'. So: x+y, then y+x, then space+yx, then no pair is left. Checked against HF too."""
    ours = assert_same_as_hf("xy yx", 300)
    assert [(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges] == [(b"x", b"y"), (b"y", b"x"), (b" ", b"yx")]
    assert ours.vocab_size == 259


@st.composite
def assigned_text(draw):
    """Arbitrary text over characters Python's Unicode database knows (no unassigned code points or
    surrogates): `tokenizers` may use a newer Unicode version for characters added since."""
    chars = st.characters(blacklist_categories=("Cn", "Cs"))
    return draw(st.text(alphabet=chars, max_size=60))


TRAINED = BPETokenizer.train(UNICODE + MIXED[:50_000], 800, special_tokens=["<|endoftext|>"])
HF_TRAINED = hf_train(UNICODE + MIXED[:50_000], 800, ["<|endoftext|>"])


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_round_trip_on_arbitrary_unicode(text):
    assert TRAINED.decode(TRAINED.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=assigned_text())
def test_pretokenizer_and_encoder_match_hf_on_arbitrary_text(text):
    """pretokenize equals tokenizers' ByteLevel(add_prefix_space=False) pre-tokenizer; encode equals its BPE."""
    ref = [piece for piece, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]
    assert [as_hf_string(p.encode()) for p in pretokenize(text)] == ref
    assert TRAINED.encode(text) == HF_TRAINED.encode(text).ids


def test_pretokenizer_examples():
    assert pretokenize("Hello world! don't 42x") == ["Hello", " world", "!", " don", "'t", " 42", "x"]
    assert pretokenize("a  b\n\nc") == ["a", " ", " b", "\n", "\n", "c"]   # the last space joins the word


def test_byte_order_is_a_permutation_with_printables_first():
    order = byte_order()
    assert sorted(order) == list(range(256))
    assert order[:3] == (ord("!"), ord('"'), ord("#")) and order.index(ord(" ")) == 188 + 32   # 188 printable bytes, then bytes 0..32
    assert [as_hf_string(bytes([b])) for b in order] == sorted(as_hf_string(bytes([b])) for b in range(256))


def test_special_tokens_encode_whole_and_decode():
    ids = TRAINED.encode("a<|endoftext|>b")
    assert 0 in ids and TRAINED.decode(ids) == "a<|endoftext|>b"
    assert ids == HF_TRAINED.encode("a<|endoftext|>b").ids


def test_invalid_utf8_decodes_to_replacement_character():
    e_acute = TRAINED.encode("é")                                     # two bytes, two tokens or one
    first_byte = [i for i, t in enumerate(TRAINED.vocab) if t == "é".encode()[:1]]
    assert TRAINED.decode(first_byte) == "\ufffd"
    assert TRAINED.decode(e_acute) == "é"


def test_compression_and_vocab_size():
    text = stories(100_000, 3)
    tok = BPETokenizer.train(text, 400)
    assert tok.vocab_size == 400 and len(tok.merges) == 400 - 256
    assert len(tok.encode(text)) < len(text.encode()) / 2.5          # merges compress the grammar's words


def test_to_dict_from_dict_and_weights_only_load(tmp_path):
    d = TRAINED.to_dict()
    torch.save(d, tmp_path / "tok.pt")
    again = BPETokenizer.from_dict(torch.load(tmp_path / "tok.pt", weights_only=True))
    assert again.merges == TRAINED.merges and again.vocab == TRAINED.vocab
    assert again.encode(UNICODE[:500]) == TRAINED.encode(UNICODE[:500])
    assert json.loads(json.dumps(d)) == d


# ----------------------------------------------------------------------------- bad input

def test_train_rejects_bad_input():
    for args, kw, match in [
            ((b"bytes", 300), {}, "text must be a str"), (("text", 255), {}, "vocab_size"),
            (("text", True), {}, "vocab_size"), (("text", 300.0), {}, "vocab_size"),
            (("text", 257), {"special_tokens": ["<a>", "<b>"]}, "vocab_size"),
            (("text", 300), {"special_tokens": "<s>"}, "special_tokens"),
            (("text", 300), {"special_tokens": ["<s>", "<s>"]}, "distinct"),
            (("text", 300), {"special_tokens": [""]}, "non-empty"),
            (("text", 300), {"min_frequency": -1}, "min_frequency"), (("text", 300), {"min_frequency": 1.5}, "min_frequency")]:
        with pytest.raises(ValueError, match=match):
            BPETokenizer.train(*args, **kw)


def test_encode_decode_reject_bad_input():
    for bad in (None, b"bytes", 5):
        with pytest.raises(ValueError, match="text must be a str"):
            TRAINED.encode(bad)
    for bad in ([TRAINED.vocab_size], [-1], "abc", [1.5], 7, [True]):
        with pytest.raises(ValueError, match="ids must be"):
            TRAINED.decode(bad)
    with pytest.raises(ValueError, match="token id must be an int"):
        TRAINED.token_bytes(TRAINED.vocab_size)
    with pytest.raises(ValueError, match="text must be a str"):
        pretokenize(None)
    assert TRAINED.decode(torch.tensor([70, 71])) == TRAINED.decode([70, 71])


def test_from_dict_rejects_malformed():
    good = TRAINED.to_dict()
    for bad in ("x", {}, {**good, "kind": "wordpiece"}, {**good, "vocab": ["zz"]}, {**good, "merges": [[0]]},
                {**good, "merges": [[0, 10 ** 6]]}, {**good, "special_tokens": ["<other>"]},
                {**good, "vocab": good["vocab"][:100]}):
        with pytest.raises(ValueError, match="expected a dict|malformed tokenizer dict|vocab must hold"):
            BPETokenizer.from_dict(bad)


def test_unassigned_characters_still_round_trip():
    text = "".join(chr(cp) for cp in (0x0378, 0x1FFFE, 0x10FFFD, 0xE000)) + " ok"
    assert all(unicodedata.category(c) in ("Cn", "Co") for c in text[:4])
    assert TRAINED.decode(TRAINED.encode(text)) == text


# ----------------------------------------------------------------------------- one merge step, written plainly


def _naive_merges(text: str, n: int) -> list[tuple[bytes, bytes]]:
    """Repeat bpe_merge_step (count every pair again each step) and spell the merges in bytes."""
    vocab = [bytes([b]) for b in byte_order()]
    id_of = {t: i for i, t in enumerate(vocab)}
    words = {}
    for piece in pretokenize(text):
        key = tuple(id_of[bytes([b])] for b in piece.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    out = []
    for _ in range(n):
        if all(len(w) < 2 for w in words):
            break
        (a, b), _, merged = bpe_merge_step(words, len(vocab))
        new = vocab[a] + vocab[b]
        if new in id_of:
            merged = {tuple(id_of[new] if t == len(vocab) else t for t in w): c for w, c in merged.items()}
        else:
            id_of[new] = len(vocab)
            vocab.append(new)
        words = merged
        out.append((vocab[a], vocab[b]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_step_repeated_learns_the_trainers_merges(seed):
    """bpe_merge_step, recounting every pair at every step, learns the same merges in the same
    order as BPETokenizer.train's incremental, heap-based trainer (the independent reference)."""
    text = stories(8_000, seed=seed) + " 2024 café naïve"
    trained = BPETokenizer.train(text, 256 + 60)
    assert _naive_merges(text, 60) == [(trained.token_bytes(a), trained.token_bytes(b)) for a, b in trained.merges]


def test_merge_step_counts_ties_and_overlaps():
    """Counts are weighted by word frequency; ties go to the smallest pair; 'a a a' merges once, left first."""
    pair, count, merged = bpe_merge_step({(1, 1, 1): 2, (2, 3): 2, (3, 4): 1}, 9)
    assert (pair, count) == ((1, 1), 4)          # (1, 1) twice per word x 2 copies
    assert merged == {(9, 1): 2, (2, 3): 2, (3, 4): 1}
    pair, count, _ = bpe_merge_step({(5, 6): 3, (2, 7): 3}, 9)
    assert (pair, count) == ((2, 7), 3)          # a tie: the smaller pair wins
    _, _, merged = bpe_merge_step({(1, 2, 1, 2): 1, (1, 2): 2}, 7)
    assert merged == {(7, 7): 1, (7,): 2}


def test_merge_table_of_the_toy_corpus():
    """Sennrich et al. (2016)'s toy words: the first merges are e+s (9), es+t (9), l+o (7)."""
    rows = bpe_merge_table(" low" * 5 + " lower" * 2 + " newest" * 6 + " widest" * 3, 3)
    assert [(r["left"], r["right"], r["count"]) for r in rows] == [("e", "s", 9), ("es", "t", 9), ("l", "o", 7)]
    assert rows[-1]["words"][0] == "Ġ lo w"
    assert len(bpe_merge_table("ab", 10)) == 1            # stops when nothing is left to merge


def test_merge_step_and_table_reject_bad_input():
    with pytest.raises(ValueError, match="non-empty dict"):
        bpe_merge_step({}, 5)
    with pytest.raises(ValueError, match="non-empty dict"):
        bpe_merge_step({(1, 2): 0}, 5)
    with pytest.raises(ValueError, match="new_id"):
        bpe_merge_step({(1, 2): 1}, -1)
    with pytest.raises(ValueError, match="nothing to merge"):
        bpe_merge_step({(1,): 3}, 5)
    with pytest.raises(ValueError, match="non-empty str"):
        bpe_merge_table("", 3)
    with pytest.raises(ValueError, match="n_merges"):
        bpe_merge_table("abc", 0)
