"""Tests for llminfra_lab.data: determinism, correct answers, disjoint splits, valid records, sampler."""
import json
import re

import pytest
import torch

from llminfra_lab.data import (
    CORPUS_KINDS,
    RECORD_SCHEMA,
    arithmetic_answer,
    arithmetic_problems,
    arithmetic_reward,
    arithmetic_split,
    batches,
    corpus,
    json_records,
    stories,
)

PROBLEM = re.compile(r"^(\d+)([+\-*])(\d+)=(-?\d+)$")


def plain_value(a: str, op: str, b: str) -> int:
    """The answer, computed independently of the module with Python's operator table."""
    import operator
    return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](int(a), int(b))


# ----------------------------------------------------------------------------- arithmetic

@pytest.mark.parametrize("n,digits,ops", [(100, 1, "+"), (500, 2, "+"), (500, 3, "+-*"), (500, 5, "*")])
def test_arithmetic_answers_are_correct(n, digits, ops):
    problems = arithmetic_problems(n, digits, seed=3, ops=ops)
    assert len(problems) == len(set(problems)) == n
    for p in problems:
        a, op, b, c = PROBLEM.match(p).groups()
        assert op in ops and len(a) <= digits and len(b) <= digits
        assert int(c) == plain_value(a, op, b)
        assert arithmetic_answer(p.split("=")[0] + "=") == c


def test_arithmetic_is_deterministic_and_seeded():
    assert arithmetic_problems(50, seed=7) == arithmetic_problems(50, seed=7)
    assert arithmetic_problems(50, seed=7) != arithmetic_problems(50, seed=8)
    assert re.fullmatch(r"\d+\+\d+=\d+", arithmetic_problems(1)[0])


def test_held_out_split_is_disjoint():
    train, test = arithmetic_split(2000, 300, digits=2, seed=1)
    assert len(train) == 2000 and len(test) == 300
    prompts = lambda xs: {x.split("=")[0] for x in xs}  # noqa: E731
    assert not prompts(train) & prompts(test)
    assert arithmetic_split(2000, 300, digits=2, seed=1) == (train, test)


def test_split_can_use_every_problem():
    """With one digit and '+', exactly 100 problems exist; a 90/10 split uses them all, once."""
    train, test = arithmetic_split(90, 10, digits=1)
    assert sorted(train + test) == sorted(f"{a}+{b}={a + b}" for a in range(10) for b in range(10))
    with pytest.raises(ValueError, match="distinct"):
        arithmetic_split(91, 10, digits=1)


def test_reward_is_verifiable():
    assert arithmetic_reward("37+58=", "95") == 1.0
    assert arithmetic_reward("37+58=", " 95\n12+3=15") == 1.0
    assert arithmetic_reward("37+58=", "950") == 0.0
    assert arithmetic_reward("37+58=", "94") == 0.0
    assert arithmetic_reward("3-8=", "-5") == 1.0
    assert arithmetic_reward("12*12", "144") == 1.0


@pytest.mark.parametrize("kw", [{"n": -1}, {"n": 1.5}, {"digits": 0}, {"digits": 10}, {"seed": "0"},
                                {"ops": "/"}, {"ops": ""}, {"ops": "++"}, {"n": 301, "digits": 1, "ops": "+-*"}])
def test_arithmetic_rejects_bad_input(kw):
    with pytest.raises(ValueError, match="must be|distinct problems"):
        arithmetic_problems(**{"n": 5, **kw})


def test_answer_and_split_reject_bad_input():
    for bad in ("37+", "+58=", "37/58=", "a+b=", 37, "37+58+1="):
        with pytest.raises(ValueError, match="prompt must"):
            arithmetic_answer(bad)
    with pytest.raises(ValueError, match="completion must be a str"):
        arithmetic_reward("37+58=", 95)
    for args in ((-1, 5), (5, -1), (1.0, 5), (True, 5)):
        with pytest.raises(ValueError, match=r"n_(train|test) must be an int >= 0"):
            arithmetic_split(*args)


# ----------------------------------------------------------------------------- stories and records

def test_stories_exact_length_and_deterministic():
    text = stories(20_000, seed=2)
    assert len(text) == 20_000 and text == stories(20_000, seed=2) and text != stories(20_000, seed=3)
    assert stories(0) == ""
    assert stories(500, seed=2) == text[:500]


def test_stories_come_from_the_grammar():
    """Every story opens by introducing its hero, ends with an ending sentence, and uses a small vocabulary."""
    text = stories(50_000, seed=4)
    complete = text.split("\n\n")[:-1]
    assert len(complete) > 50
    for story in complete:
        assert story.startswith("Once upon a time, there was a") or " who lived near " in story.split(".")[0]
        assert story.endswith((".", "!\""))
    words = set(re.findall(r"[A-Za-z']+", text))
    assert len(words) < 150


def validate(record: dict, schema: dict) -> None:
    """A plain validator for the flat schema: types, ranges, enums, required and no extra keys."""
    props = schema["properties"]
    assert set(record) == set(schema["required"]) == set(props)
    types = {"integer": int, "string": str, "number": (int, float), "boolean": bool, "array": list}
    for key, value in record.items():
        spec = props[key]
        assert isinstance(value, types[spec["type"]]), key
        if spec["type"] in ("integer", "number"):
            assert not isinstance(value, bool)
            assert spec.get("minimum", value) <= value <= spec.get("maximum", value), key
        if "enum" in spec:
            assert value in spec["enum"]
        if spec["type"] == "array":
            assert len(value) <= spec["maxItems"] and all(isinstance(v, str) for v in value)


def test_json_records_parse_and_match_schema():
    records = json_records(300, seed=5)
    assert records == json_records(300, seed=5) and records != json_records(300, seed=6)
    assert [r["id"] for r in records] == list(range(300))
    for r in records:
        validate(r, RECORD_SCHEMA)
        assert re.fullmatch(r"[a-z]+\.[a-z]+\d+@example\.com", r["email"])
    lines = corpus("json", 100_000, seed=5).split("\n")[:-1]        # the last line may be cut
    for line in lines:
        validate(json.loads(line), RECORD_SCHEMA)


def test_corpus_kinds_lengths_and_determinism():
    for kind in CORPUS_KINDS:
        text = corpus(kind, 30_000, seed=1)
        assert len(text) == 30_000 and text == corpus(kind, 30_000, seed=1) and text != corpus(kind, 30_000, seed=2)
    lines = corpus("arithmetic", 30_000, seed=1).split("\n")[:-1]
    for line in lines:
        a, op, b, c = PROBLEM.match(line).groups()
        assert int(c) == plain_value(a, op, b)


def test_corpus_rejects_bad_input():
    with pytest.raises(KeyError, match="stories"):
        corpus("poems", 100)
    for args, match in ((("stories", -1), "n_chars"), (("stories", 1.5), "n_chars"), (("json", 10, "seed"), "seed")):
        with pytest.raises(ValueError, match=match):
            corpus(*args)
    for args, match in (((-5,), "n_chars"), ((10, 0.5), "seed")):
        with pytest.raises(ValueError, match=match):
            stories(*args)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        json_records(-1)


# ----------------------------------------------------------------------------- batches

def test_batches_are_shifted_windows():
    ids = torch.arange(1000) * 7 % 513
    x, y = batches(ids, 8, 32, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 32) and x.dtype == torch.long
    for row_x, row_y in zip(x, y):
        start = next(s for s in range(1000 - 32) if torch.equal(ids[s:s + 32], row_x))
        assert torch.equal(ids[start + 1:start + 33], row_y)


def test_batches_reproducible_and_cover_the_ends():
    ids = list(range(50))
    a = batches(ids, 4, 10, torch.Generator().manual_seed(3))
    b = batches(ids, 4, 10, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x, y = batches(ids, 4, 10, g)
        seen.update(x[:, 0].tolist())
        assert int(y.max()) <= 49
    assert seen == set(range(40))                                    # every start 0..len-seq_len-1


def test_batches_reject_bad_input():
    ids = torch.arange(100)
    bad_calls = [
        lambda: batches(ids.float(), 2, 8), lambda: batches(ids.view(10, 10), 2, 8), lambda: batches("abc", 2, 8),
        lambda: batches([1, 2.5, 3], 1, 1), lambda: batches(ids, 0, 8), lambda: batches(ids, 2, 0),
        lambda: batches(ids, 2, 100), lambda: batches(ids, 2, 8, generator=5), lambda: batches(ids, True, 8),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError, match="token_ids|batch_size|seq_len|generator|need at least"):
            call()
