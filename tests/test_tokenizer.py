"""Tests for llminfra_lab.tokenizer against the Hugging Face `tokenizers` BPE trainer and encoder."""
import json
import unicodedata

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab.data import corpus, stories
from llminfra_lab.tokenizer import BPETokenizer, byte_order, pretokenize

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
    for args, kw in [((b"bytes", 300), {}), (("text", 255), {}), (("text", True), {}), (("text", 300.0), {}),
                     (("text", 257), {"special_tokens": ["<a>", "<b>"]}), (("text", 300), {"special_tokens": "<s>"}),
                     (("text", 300), {"special_tokens": ["<s>", "<s>"]}), (("text", 300), {"special_tokens": [""]}),
                     (("text", 300), {"min_frequency": -1}), (("text", 300), {"min_frequency": 1.5})]:
        with pytest.raises(ValueError):
            BPETokenizer.train(*args, **kw)


def test_encode_decode_reject_bad_input():
    for bad in (None, b"bytes", 5):
        with pytest.raises(ValueError):
            TRAINED.encode(bad)
    for bad in ([TRAINED.vocab_size], [-1], "abc", [1.5], 7, [True]):
        with pytest.raises(ValueError):
            TRAINED.decode(bad)
    with pytest.raises(ValueError):
        TRAINED.token_bytes(TRAINED.vocab_size)
    with pytest.raises(ValueError):
        pretokenize(None)
    assert TRAINED.decode(torch.tensor([70, 71])) == TRAINED.decode([70, 71])


def test_from_dict_rejects_malformed():
    good = TRAINED.to_dict()
    for bad in ("x", {}, {**good, "kind": "wordpiece"}, {**good, "vocab": ["zz"]}, {**good, "merges": [[0]]},
                {**good, "merges": [[0, 10 ** 6]]}, {**good, "special_tokens": ["<other>"]},
                {**good, "vocab": good["vocab"][:100]}):
        with pytest.raises(ValueError):
            BPETokenizer.from_dict(bad)


def test_unassigned_characters_still_round_trip():
    text = "".join(chr(cp) for cp in (0x0378, 0x1FFFE, 0x10FFFD, 0xE000)) + " ok"
    assert all(unicodedata.category(c) in ("Cn", "Co") for c in text[:4])
    assert TRAINED.decode(TRAINED.encode(text)) == text
