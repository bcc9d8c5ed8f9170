"""The frozen estimator suite: its definition file, checked with pydantic, and the specs it names.

A suite version is one YAML file in this package (``mmmic-suite-1.yaml`` for ``mmmic-suite/1``),
read with ``yaml.safe_load``. Each task is one line: a stable id, a family, a spec (relative to
the shipped specs), ``--set`` values, a query, a sample size and the frozen exact MI in nats.
The seeds are the suite's. A task whose spec this installation does not ship is listed as
unavailable and refused by name when selected; a spec whose exact MI no longer equals the frozen
value is refused (the truth of a frozen task never moves: a changed task is a new suite version).
"""

from __future__ import annotations

import fnmatch
import math
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmmi_dsl.errors import MmmicError, UsageError, did_you_mean

SUITES = {"mmmic-suite/1": "mmmic-suite-1.yaml"}
LATEST = "mmmic-suite/1"
FROZEN_TOLERANCE = 1e-9  # nats, relative to 1 + |MI|: the frozen value against the spec's exact MI


class SuiteError(MmmicError):
    """A task that cannot be run here (its spec is not shipped, its truth moved) (exit code 1)."""

    exit_code = 1


class Task(BaseModel):
    """One task: ``I(a; b)`` or ``I(a; b | c)`` of a spec at fixed ``--set`` values, ``n`` tuples a seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    family: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    spec: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./+-]*\.mmi$")
    query: str | None = None  # None: the spec's first report
    set: dict[str, int | float | str] = Field(default_factory=dict)
    n: int | None = Field(default=None, ge=20)  # None: the suite's n
    latents: bool = False  # save the latents too (a query that names one)
    exact_nats: float

    @field_validator("spec")
    @classmethod
    def _inside(cls, value: str) -> str:
        if ".." in Path(value).parts:
            raise ValueError("a spec path stays inside the shipped specs (no ..)")
        return value


class Suite(BaseModel):
    """A suite version: its format name, default sample size, seeds and tasks (ids unique)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["mmmic-suite/1"]
    description: str
    n: int = Field(ge=20)
    seeds: tuple[int, ...] = Field(min_length=1)
    tasks: tuple[Task, ...] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks):
        seen = set()
        for t in tasks:
            if t.id in seen:
                raise ValueError(f"task id {t.id!r} appears twice")
            seen.add(t.id)
        return tasks

    @cached_property
    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    def size(self, task: Task) -> int:
        return task.n if task.n is not None else self.n


def specs_dir() -> Path:
    """Where the suite's specs are: ``mmmi_dsl/specs`` in an installed wheel, else the checkout's ``specs/``."""
    here = Path(__file__).resolve().parent.parent
    shipped = here / "specs"
    return shipped if shipped.is_dir() else here.parent / "specs"


def load_suite(version: str = LATEST) -> Suite:
    """The suite ``version`` (``mmmic-suite/1``) from its file in this package."""
    if version not in SUITES:
        raise UsageError(f"unknown suite {version!r}; known: {', '.join(SUITES)}")
    path = Path(__file__).with_name(SUITES[version])
    try:
        return Suite.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as err:
        raise SuiteError(f"{path}: not a valid suite definition ({err})") from None


def spec_path(task: Task) -> Path:
    """The file of ``task``'s spec (it may not exist: :func:`available`)."""
    return specs_dir() / task.spec


def available(task: Task) -> bool:
    return spec_path(task).is_file()


def select(suite: Suite, patterns: str | None) -> list[Task]:
    """The tasks whose ids match any comma-separated glob pattern (all of them for None), in suite order.

    Raises:
        UsageError: a pattern that matches no task (with the closest ids).
    """
    if patterns is None:
        return list(suite.tasks)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    if not pats:
        raise UsageError("--tasks: give one glob pattern of task ids or more, e.g. 'multinormal-*,digits_*'")
    for p in pats:
        if not any(fnmatch.fnmatchcase(t.id, p) for t in suite.tasks):
            raise UsageError(f"--tasks: {p!r} matches no task of {suite.format}; {did_you_mean(p, suite.by_id)}")
    return [t for t in suite.tasks if any(fnmatch.fnmatchcase(t.id, p) for p in pats)]


def require_available(tasks: list[Task]) -> None:
    """Refuse, naming them, tasks whose spec this installation does not ship."""
    missing = [t for t in tasks if not available(t)]
    if missing:
        shown = ", ".join(f"{t.id} ({t.spec})" for t in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise SuiteError(f"{len(missing)} selected task(s) have no spec in {specs_dir()}: {shown}\n"
                         "  = help: this installation of mmmic does not ship them yet; leave them out with "
                         "--tasks (`mmmic suite list` marks them)")


class Resolved(BaseModel):
    """A task with its spec loaded: the query's sides (names), their sizes, and the exact MI checked."""

    model_config = ConfigDict(frozen=True)

    task: Task
    query: str
    sides: tuple[tuple[str, ...], tuple[str, ...]]
    given: tuple[str, ...]
    dims: str  # "p x q" or "p x q | r"
    exact_nats: float


def resolve(task: Task) -> Resolved:
    """Load ``task``'s spec at its ``--set`` values and check its exact MI against the frozen one.

    Raises:
        SuiteError: the spec is missing, the query is not an ``I(a; b [| c])``, or its MI moved.
        SpecError: the spec does not load (reported with its position).
    """
    from mmmi_dsl import load

    require_available([task])
    spec = load(spec_path(task), dict(task.set))
    text = task.query or (spec.reports[0].text if spec.reports else "")
    q = spec.query(text)
    if q.kind != "I" or len(q.groups) != 2:
        raise SuiteError(f"task {task.id}: {text!r} is not an I(a; b) or I(a; b | c)")
    exact = spec.mi(text, unit="nats")
    if not math.isfinite(exact) or abs(exact - task.exact_nats) > FROZEN_TOLERANCE * (1 + abs(exact)):
        raise SuiteError(f"task {task.id}: {task.spec} now gives {text} = {exact!r} nats, but the suite froze "
                         f"{task.exact_nats!r}\n  = help: the spec changed since the suite was frozen; a changed "
                         "task belongs in a new suite version")
    sizes = [sum(spec.size_of(v) for v in g) for g in (*q.groups, q.given)]
    dims = f"{sizes[0]} x {sizes[1]}" + (f" | {sizes[2]}" if q.given else "")
    return Resolved(task=task, query=q.text, sides=(tuple(q.groups[0]), tuple(q.groups[1])), given=tuple(q.given),
                    dims=dims, exact_nats=exact)
