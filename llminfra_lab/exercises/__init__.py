"""The labs' implement-it tasks and exercises, one file per chapter module.

`llminfra_lab/exercises/<module>.py` registers, with `llminfra_lab.labkit`, the tasks and
exercises of the lab of the chapter whose module is `<module>` (names "<module>.<what>").
A file may import its own chapter's module, earlier chapters' modules and the spine.
Labs call `labkit.check_function(name, fn)` and `labkit.check_answer(name, answer)`.
"""
