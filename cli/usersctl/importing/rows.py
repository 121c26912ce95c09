"""What the stages of an import pass along: the rows, the problems found in them, and the
summary of what was done."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from usersctl.errors import Conflict, InvalidInput

FORMATS = ("jsonl", "csv", "json", "yaml")
CONFLICT_RULES = ("fail", "skip", "update")
MAX_LINE_BYTES = 1 << 20  # a longer line is refused rather than read into memory
MAX_REPORTED = 20  # problems listed in an error message
FLAGS = {"is_active": True, "is_superuser": False, "is_verified": False}
WRITE_BATCH = 5_000
LOOKUP_BATCH = 5_000  # emails per lookup query (one bound parameter)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Problem:
    """Why one row was refused; ``line`` counts from 1 (for JSON arrays, the item number)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class Problems:
    """The first ``MAX_REPORTED`` problems and how many there were in all: a file of a million
    bad rows takes the memory of twenty."""

    def __init__(self, problems: Iterable[Problem] = ()) -> None:
        self.first: list[Problem] = []
        self.count = 0
        for problem in problems:
            self.append(problem)

    def append(self, problem: Problem) -> None:
        self.count += 1
        if len(self.first) < MAX_REPORTED:
            self.first.append(problem)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.first)

    def listed(self) -> str:
        """The first problems, one after the other on one line, and how many more there are."""
        shown = "; ".join(str(problem) for problem in self.first)
        more = self.count - len(self.first)
        return f"{shown}; and {more} more" if more > 0 else shown


class ImportRejected(InvalidInput):
    """Some rows are invalid; nothing was written. ``problems`` keeps the first few and the count."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = problems if isinstance(problems, Problems) else Problems(problems)
        count = self.problems.count
        noun = "row is" if count == 1 else "rows are"
        super().__init__(f"{count} {noun} invalid, nothing was written: {self.problems.listed()}")


class ImportConflict(Conflict):
    """Rows clash with existing users (or each other) under ``--on-conflict fail``."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = problems if isinstance(problems, Problems) else Problems(problems)
        super().__init__(
            f"{self.problems.count} row(s) conflict with existing users, nothing was written "
            f"(use --on-conflict skip or update): {self.problems.listed()}"
        )


@dataclass
class ImportSummary:
    """What an import did (or, for a dry run, would do)."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    #: Database access tokens of updated users whose password changed or who were deactivated.
    revoked_tokens: int = 0
    dry_run: bool = False
    #: Why plaintext passwords were hashed with bcrypt (``HashChoice.note``), not in the output.
    hash_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "invalid": self.invalid,
            "revoked_tokens": self.revoked_tokens,
            "dry_run": self.dry_run,
        }


@dataclass
class Row:
    """One validated row: the column values to write, and its plaintext password until hashed."""

    line: int
    key: str  # the lowercased email (``fold_case``), which conflicts are decided on
    values: dict[str, Any]
    password: str | None = field(default=None, repr=False)
    #: The flags the row left out, in ``values`` with their defaults: a new user takes those, an
    #: updated one keeps its own.
    defaulted: tuple[str, ...] = ()
