"""The lab checkers: the framework, and every registered task and exercise.

For each implement-it task: the package's reference passes its own checker, the task's
registered `mistake` (a plausible wrong implementation) fails it, and a stub that raises
NotImplementedError reads "not implemented yet". For each exercise: the package's answer
is accepted for many seeds, the registered mistake is rejected, None is "not answered".
"""
from __future__ import annotations

import pytest

from llminfra_lab import labkit

ITEMS = labkit.registry()
TASKS = sorted(n for n, item in ITEMS.items() if isinstance(item, labkit.Task))
EXERCISES = sorted(n for n, item in ITEMS.items() if isinstance(item, labkit.Exercise))


def _stub(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize("name", TASKS)
def test_task_accepts_the_reference_and_rejects_its_mistake(name):
    item = labkit.get(name)
    for seed in (0, 1, 2):
        assert labkit.check_function(name, item.reference, seed=seed).ok is True
    assert any(labkit.check_function(name, item.mistake, seed=seed).ok is False for seed in (0, 1, 2))
    stub = labkit.check_function(name, _stub)
    assert stub.ok is None and "not implemented yet" in stub.message


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_accepts_the_solution_for_many_seeds_and_rejects_its_mistake(name):
    item = labkit.get(name)
    assert isinstance(labkit.question(name), str) and labkit.question(name)
    rejected = 0
    for seed in range(20):
        params = labkit.variant(name, seed)
        assert labkit.check_answer(name, item.solve(**params), seed=seed).ok is True
        rejected += labkit.check_answer(name, item.mistake(**params), seed=seed).ok is False
    assert rejected >= 18, f"{name}: the mistake was accepted for {20 - rejected} of 20 seeds"
    assert labkit.check_answer(name, None).ok is None


def test_every_lab_has_two_tasks_per_published_chapter():
    """Each published chapter's module registers at least two implement-it tasks."""
    from pathlib import Path

    from llminfra_lab import book

    root = Path(__file__).resolve().parents[1]
    for ch in book.chapters():
        if (root / "chapters" / f"{ch.stem}.md").exists():
            tasks = [n for n in TASKS if n.startswith(ch.module + ".")]
            assert len(tasks) >= 2, f"chapter {ch.n} ({ch.module}) has {len(tasks)} implement-it tasks"


def test_verdicts_for_wrong_and_failing_functions():
    """A function that raises says which case and why; a wrong one shows got vs expected."""
    name = TASKS[0]

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    verdict = labkit.check_function(name, broken)
    assert verdict.ok is False and "raised ZeroDivisionError: oops" in verdict.message
    assert not bool(verdict) and repr(verdict) == verdict.message


def test_close_compares_nested_values_and_tensors():
    import torch

    assert labkit.close([1.0, {"a": 2.0}], [1.0 + 1e-9, {"a": 2.0}])
    assert not labkit.close([1.0, 2.0], [1.0])
    assert labkit.close(torch.ones(3), torch.ones(3) + 1e-9)
    assert not labkit.close(torch.ones(3), torch.ones(4))
    assert not labkit.close(True, 1) and labkit.close("a", "a")


def test_bad_names_and_seeds():
    with pytest.raises(KeyError, match="<module>.<what>"):
        labkit.get("nodot")
    with pytest.raises(KeyError, match="no task or exercise named"):
        labkit.get("roofline.no_such_thing")
    with pytest.raises(KeyError, match="check it with check_answer"):
        labkit.check_function(EXERCISES[0], lambda: None)
    with pytest.raises(KeyError, match="check it with check_function"):
        labkit.check_answer(TASKS[0], 1.0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        labkit.question(EXERCISES[0], seed=-1)
    with pytest.raises(ValueError, match="pass your function itself"):
        labkit.check_function(TASKS[0], 3)
    with pytest.raises(ValueError, match="registered twice"):
        labkit.task(TASKS[0], "", abs, lambda rng: [], abs)
