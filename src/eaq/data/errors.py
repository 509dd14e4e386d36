"""The one error type for bad datasets: it names the file, the field and what was expected."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset failed validation.

    Attributes: ``path`` (the file or directory), ``field`` (the array or metadata key) and
    ``problem`` (what was wrong and what was expected).
    """

    def __init__(self, path: object, field: str | None, problem: str):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}" + (f" [field '{field}']" if field else "")
        super().__init__(f"{where}: {problem}")
