"""The checkers behind the labs' implement-it cells and exercises.

A lab hands the reader two kinds of work, and this module checks both:

- an implement-it **task**: the reader writes a short function (one BPE merge, one
  AdamW step, a ring's send schedule); `check_function(name, fn)` runs it on random cases
  beside the package's own implementation and says "not implemented yet", which case
  failed and how, or "correct";
- an **exercise**: the reader computes a number (or picks an answer) in an empty cell;
  `check_answer(name, answer)` compares it with the package's solution.

Each task and exercise is registered once, by the file `llminfra_lab/exercises/<module>.py`
of the chapter's module (name "<module>.<what>", e.g. "roofline.gemm_intensity"), with
`mistake`: a plausible wrong implementation or answer. The unit tests prove that every
checker accepts the package's own answer and rejects its mistake.

Exercises come in seeded variants, so that every student in a course can get numbers of
their own: `question(name, seed)` states the variant, `check_answer(name, answer, seed)`
checks it. Seed 0 is the variant the chapter and the stored lab use.
"""
from __future__ import annotations

import copy
import importlib
import math
import numbers
import pkgutil
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llminfra_lab import exercises

__all__ = [
    "Verdict", "Task", "Exercise", "task", "exercise", "registry", "get",
    "check_function", "check_answer", "question", "variant", "solution", "close",
]


@dataclass(frozen=True)
class Verdict:
    """What a checker concluded: ok is True (correct), False (wrong) or None (not attempted)."""

    ok: bool | None
    message: str

    def __bool__(self) -> bool:
        return self.ok is True

    def __repr__(self) -> str:  # the lab cell shows the verdict as its output
        return self.message

    __str__ = __repr__


def close(got: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """True when `got` equals `expected` to a relative tolerance: numbers, tensors, arrays,
    strings, and (nested) sequences or dicts of them."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and got == expected
    if isinstance(expected, numbers.Real) and isinstance(got, numbers.Real):
        return math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol) or (
            math.isnan(float(got)) and math.isnan(float(expected)))
    if hasattr(expected, "shape") and hasattr(got, "shape"):  # torch tensors and numpy arrays
        if tuple(got.shape) != tuple(expected.shape):
            return False
        import torch

        g = torch.as_tensor(got).double().cpu()
        e = torch.as_tensor(expected).double().cpu()
        return bool(torch.allclose(g, e, rtol=rtol, atol=max(atol, 1e-6), equal_nan=True))
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(close(got[k], expected[k], rtol, atol) for k in expected)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(close(g, e, rtol, atol) for g, e in zip(got, expected))
    return got == expected


@dataclass(frozen=True)
class Task:
    """An implement-it cell: the reader's function must agree with `reference` on `cases`.

    cases(rng) returns a list of argument tuples (or dicts of keyword arguments), drawn
    with the `random.Random` it is given; compare(got, expected) says whether they agree.
    """

    name: str
    prompt: str
    reference: Callable[..., Any]
    cases: Callable[[random.Random], Sequence[tuple | dict]]
    mistake: Callable[..., Any]
    compare: Callable[[Any, Any], bool] = close


@dataclass(frozen=True)
class Exercise:
    """A question answered in an empty cell. params(seed) gives a variant's numbers (seed 0:
    the chapter's), text(**params) states it, solve(**params) answers it, mistake(**params)
    is a plausible wrong answer. Numeric answers are compared to `rtol`."""

    name: str
    text: Callable[..., str]
    params: Callable[[int], dict]
    solve: Callable[..., Any]
    mistake: Callable[..., Any]
    rtol: float = 0.02
    hint: str = ""
    compare: Callable[..., bool] | None = field(default=None)


_REGISTRY: dict[str, Task | Exercise] = {}


def _register(item: Task | Exercise) -> Task | Exercise:
    module, _, what = item.name.partition(".")
    if not module or not what:
        raise ValueError(f"a checker's name is '<module>.<what>', got {item.name!r}")
    if item.name in _REGISTRY:
        raise ValueError(f"{item.name!r} is registered twice")
    _REGISTRY[item.name] = item
    return item


def task(name: str, prompt: str, reference: Callable, cases: Callable, mistake: Callable,
         compare: Callable = close) -> Task:
    """Register an implement-it task (called by `llminfra_lab.exercises.<module>`)."""
    return _register(Task(name, prompt, reference, cases, mistake, compare))


def exercise(name: str, text: Callable[..., str], params: Callable[[int], dict], solve: Callable,
             mistake: Callable, rtol: float = 0.02, hint: str = "", compare: Callable | None = None) -> Exercise:
    """Register an exercise (called by `llminfra_lab.exercises.<module>`)."""
    return _register(Exercise(name, text, params, solve, mistake, rtol, hint, compare))


def get(name: str) -> Task | Exercise:
    """The registered task or exercise `name` ("<module>.<what>"), loading its module."""
    if not isinstance(name, str) or "." not in name:
        raise KeyError(f"a checker's name is '<module>.<what>', got {name!r}")
    if name not in _REGISTRY:
        module = name.partition(".")[0]
        try:
            importlib.import_module(f"llminfra_lab.exercises.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"llminfra_lab.exercises.{module}":
                raise
    if name not in _REGISTRY:
        known = sorted(n for n in _REGISTRY if n.startswith(name.partition(".")[0] + "."))
        raise KeyError(f"no task or exercise named {name!r}; known: {known}")
    return _REGISTRY[name]


def registry(module: str | None = None) -> dict[str, Task | Exercise]:
    """Every registered task and exercise (of one module's file, or of all of them)."""
    names = [module] if module else sorted(_exercise_modules())
    for m in names:
        importlib.import_module(f"llminfra_lab.exercises.{m}")
    return {n: item for n, item in sorted(_REGISTRY.items()) if module is None or n.startswith(module + ".")}


def _exercise_modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(exercises.__path__) if not m.name.startswith("_")]


def _call(fn: Callable, args: tuple | dict) -> Any:
    return fn(**args) if isinstance(args, dict) else fn(*args)


def _show(args: tuple | dict, limit: int = 160) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in args.items()) if isinstance(args, dict) else ", ".join(map(repr, args))
    return text if len(text) <= limit else text[:limit] + " ..."


def _copy(args: tuple | dict) -> tuple | dict:
    return copy.deepcopy(args)


def check_function(name: str, fn: Callable, seed: int = 0, n_cases: int | None = None) -> Verdict:
    """Run the reader's `fn` on the task's random cases beside the package's reference.

    Returns a Verdict: "not implemented yet" while `fn` raises NotImplementedError, the
    first failing case with what was returned and expected, or "correct".
    """
    item = get(name)
    if not isinstance(item, Task):
        raise KeyError(f"{name!r} is an exercise: check it with check_answer")
    if not callable(fn):
        raise ValueError(f"pass your function itself, got {type(fn).__name__}")
    cases = list(item.cases(random.Random(seed)))
    if n_cases is not None:
        cases = cases[:n_cases]
    fname = getattr(fn, "__name__", "your function")
    for i, args in enumerate(cases, 1):
        expected = _call(item.reference, _copy(args))
        try:
            got = _call(fn, _copy(args))
        except NotImplementedError:
            return Verdict(None, f"{name}: not implemented yet. {item.prompt}")
        except Exception as err:  # the reader's code failed: say where, do not stop the lab
            return Verdict(False, f"{name}: case {i} of {len(cases)} raised {type(err).__name__}: {err}\n"
                                  f"  {fname}({_show(args)})")
        if not item.compare(got, expected):
            return Verdict(False, f"{name}: case {i} of {len(cases)} failed:\n  {fname}({_show(args)})\n"
                                  f"  returned {_short(got)}\n  expected {_short(expected)}")
    return Verdict(True, f"{name}: correct on all {len(cases)} cases.")


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _exercise(name: str) -> Exercise:
    item = get(name)
    if not isinstance(item, Exercise):
        raise KeyError(f"{name!r} is an implement-it task: check it with check_function")
    return item


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return int(seed)


def variant(name: str, seed: int = 0) -> dict:
    """The numbers of exercise `name` for `seed` (seed 0: the chapter's own)."""
    return dict(_exercise(name).params(_seed(seed)))


def question(name: str, seed: int = 0) -> str:
    """The text of exercise `name` with the numbers of `seed`."""
    item = _exercise(name)
    return item.text(**item.params(_seed(seed)))


def solution(name: str, seed: int = 0) -> Any:
    """The package's answer to exercise `name` for `seed` (instructors; solutions are folded)."""
    item = _exercise(name)
    return item.solve(**item.params(_seed(seed)))


def check_answer(name: str, answer: Any, seed: int = 0) -> Verdict:
    """Compare the reader's `answer` to exercise `name` (variant `seed`) with the package's."""
    item = _exercise(name)
    if answer is None or answer is Ellipsis:
        return Verdict(None, f"{name}: not answered yet (replace None with your answer).")
    expected = item.solve(**item.params(_seed(seed)))
    ok = item.compare(answer, expected) if item.compare else close(answer, expected, rtol=item.rtol)
    if ok:
        return Verdict(True, f"{name}: correct.")
    hint = f" Hint: {item.hint}" if item.hint else ""
    return Verdict(False, f"{name}: {_short(answer)} is not right (tolerance {item.rtol:.0%}).{hint}")
