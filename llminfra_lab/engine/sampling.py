"""Sampling parameters, the per-request sampler, stop strings and the tiny GPT's chat template.

An engine samples every running request's next token from one row of the batch's logits,
each with its own parameters and its own random generator: two requests in one batch must
not share a random stream, or one request's output would depend on who else was running.
`sample_token` is `model.generate`'s rule for one row (same `model.filter_logits`, same
`torch.multinomial`), so a request with a seed draws what `generate` draws with a generator
seeded the same way.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch

from llminfra_lab.model import filter_logits

__all__ = [
    "SamplingParams", "sampling_probs", "sample_token", "stop_position", "emit_safe_length", "CHAT_TEMPLATE_DOC",
    "apply_chat_template", "MAX_STOP_STRINGS",
]

MAX_STOP_STRINGS = 4          # the OpenAI API accepts up to four stop sequences


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded (the OpenAI API's names; top_k as vLLM adds it).

    temperature: 0 = greedy (argmax), else logits / temperature, in [0, 2];
    top_p: nucleus mass in (0, 1]; top_k: keep the k most likely tokens (None = all);
    max_tokens: how many tokens to generate at most (>= 1);
    stop: strings that end the output (not included in it), at most four;
    seed: seeds this request's own torch.Generator (None = the engine picks one from its seed).
    """
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    max_tokens: int = 16
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or not 0 <= t <= 2:
            raise ValueError(f"temperature must be a number in [0, 2], got {t!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1], got {p!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be None or an int >= 1, got {self.top_k!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, numbers.Integral) \
                or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, (tuple, list)) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be a non-empty string or a list of non-empty strings, got {self.stop!r}")
        if len(stop) > MAX_STOP_STRINGS:
            raise ValueError(f"stop takes at most {MAX_STOP_STRINGS} strings, got {len(stop)}")
        object.__setattr__(self, "stop", tuple(stop))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral)
                                      or not 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {self.seed!r}")


def sampling_probs(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                   top_p: float | None = None) -> torch.Tensor:
    """The distribution a token is drawn from: softmax(top-k/top-p filter(logits / temperature)).

    Temperature first, then the filters, then one softmax over the survivors: the order
    `model.generate` uses (and vLLM's sampler). logits (..., vocab) -> probabilities (..., vocab).
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0 (0 means greedy: take the argmax), got {temperature!r}")
    top_p = None if top_p is not None and top_p >= 1 else top_p
    return torch.softmax(filter_logits(logits.float() / temperature, top_k, top_p), dim=-1)


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> int:
    """The next token id from one row of logits (vocab,), by `model.generate`'s rule.

    Greedy (temperature 0) takes the argmax; otherwise `sampling_probs` is sampled with
    `generator` (one torch.multinomial draw, as `generate` makes).
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1:
        raise ValueError(f"logits must be a 1-D tensor (vocab,), got {getattr(logits, 'shape', type(logits))}")
    if not isinstance(params, SamplingParams):
        raise ValueError(f"params must be a SamplingParams, got {type(params).__name__}")
    if params.temperature == 0:
        return int(logits.float().argmax())
    probs = sampling_probs(logits[None], params.temperature, params.top_k, params.top_p)
    return int(torch.multinomial(probs, 1, generator=generator)[0, 0])


def stop_position(text: str, stop: tuple[str, ...]) -> int | None:
    """Index where the earliest stop string starts in text, or None when none occurs."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def emit_safe_length(text: str, stop: tuple[str, ...]) -> int:
    """How many leading characters of text can be streamed now.

    Held back: a tail that could still grow into a stop string (a proper prefix of one), and
    a trailing U+FFFD, which is usually a multi-byte character whose other bytes are in the
    next token. What is held back is sent when the next token settles it.
    """
    keep = len(text)
    while keep and text[keep - 1] == "\ufffd":
        keep -= 1
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, keep), 0, -1):
            if text[keep - k:keep] == s[:k]:
                hold = max(hold, k)
                break
    return keep - hold


CHAT_TEMPLATE_DOC = """\
The tiny GPT has no role tokens: it was trained on short stories and on arithmetic lines
("12+34=46") separated by newlines. Its chat template writes a conversation in that format:
a system message becomes its own line; each user message is written as is, and the
assistant's reply continues it on the same line, ending with a newline; the prompt ends
with the last user message, so the model's continuation is the assistant's turn. The turn
ends at the next newline, which the server adds as a stop string for chat requests.

    [system "Add."] [user "12+34="]                       ->  "Add.\\n12+34="
    [user "1+1="] [assistant "2"] [user "2+2="]          ->  "1+1=2\\n2+2="
"""


def apply_chat_template(messages: list[dict]) -> str:
    """The prompt text for a list of {"role", "content"} messages (see CHAT_TEMPLATE_DOC)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    parts: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be a dict with a string 'content', got {m!r}")
        role = m.get("role")
        if role == "system":
            parts.append(m["content"] + "\n")
        elif role == "user":
            parts.append(m["content"])
        elif role == "assistant":
            parts.append(m["content"] + "\n")
        else:
            raise ValueError(f"messages[{i}]['role'] must be 'system', 'user' or 'assistant', got {role!r}")
    if messages[-1].get("role") != "user":
        raise ValueError("the last message must be a user message (the model writes the assistant's turn)")
    return "".join(parts)
