"""What a nightly run does with the open runs it finds: a pure function of their records.

A run is open when it was interrupted (killed, machine lost) before it completed;
the run lock guarantees none of them is still running.  Every open run, oldest
first, gets one step:

* decided (evaluated or posted): FINISH it from its recorded allocation, never
  deciding it again, so the ledger ends as if nothing had happened;
* not decided, and read the same inputs as tonight: CONTINUE it (nothing was
  posted, so it carries on from its state as tonight's run);
* not decided, other inputs: ABANDON it (it ends failed; nothing was posted).

The run to continue is the first undecided run with tonight's inputs, or the
last decided one with them (it already was tonight's run: only finishing was
left).  With none, tonight starts a new run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ledgers.runs import RunRecord, RunState

ABANDONED = (
    "abandoned: interrupted before it was decided (nothing posted), "
    "and a later run had other inputs"
)


class Step(StrEnum):
    """What happens to one open run."""

    FINISH = "finish"
    CONTINUE = "continue"
    ABANDON = "abandon"


@dataclass(frozen=True)
class Tonight:
    """The inputs of the run asked for, as a run records them."""

    as_of: dt.date
    data_dir: str  # resolved
    policies: Mapping[str, str]  # policy id -> sha256
    catalogue_sha256: str
    sources: Mapping[str, str]  # source -> sha256


@dataclass(frozen=True)
class Resume:
    """The step of every open run, oldest first, and the run tonight continues (if any)."""

    steps: tuple[tuple[int, Step], ...] = ()
    current: int | None = None

    @property
    def resumed(self) -> list[int]:
        """The runs finished or continued."""
        return [run_id for run_id, step in self.steps if step is not Step.ABANDON]

    @property
    def abandoned(self) -> list[int]:
        """The runs ended as failed."""
        return [run_id for run_id, step in self.steps if step is Step.ABANDON]


def same_inputs(run: RunRecord, tonight: Tonight) -> bool:
    """Whether `run` read what tonight reads (a run that only started has read no source yet)."""
    return (
        run.as_of == tonight.as_of
        and run.data_dir == tonight.data_dir
        and dict(run.policies) == dict(tonight.policies)
        and (
            run.state is RunState.STARTED
            or (
                run.catalogue_sha256 == tonight.catalogue_sha256
                and dict(run.sources) == dict(tonight.sources)
            )
        )
    )


def plan_resume(open_runs: Sequence[RunRecord], tonight: Tonight) -> Resume:
    """The step of every open run (oldest first) and the run tonight continues."""
    steps: list[tuple[int, Step]] = []
    current: int | None = None
    for run in sorted(open_runs, key=lambda r: r.run_id):
        same = same_inputs(run, tonight)
        if run.state.is_decided:
            steps.append((run.run_id, Step.FINISH))
            if same:
                current = run.run_id
        elif same and current is None:
            steps.append((run.run_id, Step.CONTINUE))
            current = run.run_id
        else:
            steps.append((run.run_id, Step.ABANDON))
    return Resume(tuple(steps), current)


__all__ = ["ABANDONED", "Resume", "Step", "Tonight", "plan_resume", "same_inputs"]
