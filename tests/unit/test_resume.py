"""What a nightly run does with the open runs it finds, as a pure function of their records:
no city, no database, no process to kill."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from jobs.resume import Resume, Step, Tonight, plan_resume, same_inputs
from ledgers.runs import RunRecord, RunState

AS_OF = dt.date(2026, 3, 15)
TONIGHT = Tonight(
    as_of=AS_OF,
    data_dir="/data/2026-03-15",
    policies={"p1": "a" * 64, "p2": "b" * 64},
    catalogue_sha256="c" * 64,
    sources={"enterprises": "d" * 64, "tax_monthly": "e" * 64},
)


def record(run_id: int, state: RunState, **changed: object) -> RunRecord:
    """A nightly run that read exactly tonight's inputs, got to `state`, then stopped."""
    ingested = state is not RunState.STARTED
    run = RunRecord(
        run_id=run_id,
        kind="nightly",
        as_of=AS_OF,
        state=state,
        data_dir=TONIGHT.data_dir,
        store_dir="/store",
        started_at=dt.datetime(2026, 3, 15, 1, 0),
        catalogue_sha256=TONIGHT.catalogue_sha256 if ingested else None,
        sources=dict(TONIGHT.sources) if ingested else {},
        policies=dict(TONIGHT.policies),
    )
    return replace(run, **changed)  # type: ignore[arg-type]


OTHER_SOURCES = {"enterprises": "f" * 64, "tax_monthly": "e" * 64}

CASES = {
    "nothing open: a new run": ([], (), None),
    "started with tonight's inputs: continued": (
        [record(1, RunState.STARTED)],
        ((1, Step.CONTINUE),),
        1,
    ),
    "started: its sources are not compared (it read none yet)": (
        [record(1, RunState.STARTED, sources=OTHER_SOURCES)],
        ((1, Step.CONTINUE),),
        1,
    ),
    "started with other policies: abandoned": (
        [record(1, RunState.STARTED, policies={"p1": "a" * 64})],
        ((1, Step.ABANDON),),
        None,
    ),
    "started for another date: abandoned": (
        [record(1, RunState.STARTED, as_of=dt.date(2026, 3, 14))],
        ((1, Step.ABANDON),),
        None,
    ),
    "started on another data folder: abandoned": (
        [record(1, RunState.STARTED, data_dir="/data/other")],
        ((1, Step.ABANDON),),
        None,
    ),
    "ingested with tonight's inputs: continued": (
        [record(1, RunState.INGESTED)],
        ((1, Step.CONTINUE),),
        1,
    ),
    "ingested, a source file changed since: abandoned": (
        [record(1, RunState.INGESTED, sources=OTHER_SOURCES)],
        ((1, Step.ABANDON),),
        None,
    ),
    "ingested under another source catalogue: abandoned": (
        [record(1, RunState.INGESTED, catalogue_sha256="0" * 64)],
        ((1, Step.ABANDON),),
        None,
    ),
    "evaluated with tonight's inputs: finished, and it is tonight's run": (
        [record(1, RunState.EVALUATED)],
        ((1, Step.FINISH),),
        1,
    ),
    "posted with tonight's inputs: finished, and it is tonight's run": (
        [record(1, RunState.POSTED)],
        ((1, Step.FINISH),),
        1,
    ),
    "evaluated with other inputs: finished all the same, never decided again": (
        [record(1, RunState.EVALUATED, sources=OTHER_SOURCES)],
        ((1, Step.FINISH),),
        None,
    ),
    "posted for another date: finished, tonight starts a new run": (
        [record(1, RunState.POSTED, as_of=dt.date(2026, 3, 14))],
        ((1, Step.FINISH),),
        None,
    ),
    "a decided run, then an undecided one with tonight's inputs": (
        [record(1, RunState.POSTED, as_of=dt.date(2026, 3, 14)), record(2, RunState.INGESTED)],
        ((1, Step.FINISH), (2, Step.CONTINUE)),
        2,
    ),
    "two undecided runs with tonight's inputs: the first is continued": (
        [record(1, RunState.STARTED), record(2, RunState.INGESTED)],
        ((1, Step.CONTINUE), (2, Step.ABANDON)),
        1,
    ),
    "oldest first, whatever order the records come in": (
        [record(3, RunState.STARTED), record(2, RunState.EVALUATED, sources=OTHER_SOURCES)],
        ((2, Step.FINISH), (3, Step.CONTINUE)),
        3,
    ),
}


@pytest.mark.parametrize(("open_runs", "steps", "current"), CASES.values(), ids=CASES.keys())
def test_the_step_of_every_open_run_and_the_run_to_continue(
    open_runs: list[RunRecord], steps: tuple[tuple[int, Step], ...], current: int | None
) -> None:
    assert plan_resume(open_runs, TONIGHT) == Resume(steps, current)


def test_resumed_and_abandoned_are_what_the_run_reports() -> None:
    plan = plan_resume(
        [
            record(1, RunState.POSTED, as_of=dt.date(2026, 3, 14)),
            record(2, RunState.INGESTED, sources=OTHER_SOURCES),
            record(3, RunState.STARTED),
        ],
        TONIGHT,
    )
    assert plan.resumed == [1, 3]
    assert plan.abandoned == [2]
    assert plan.current == 3


def test_a_decided_run_with_tonights_inputs_was_tonights_run() -> None:
    """Only finishing was left: a later undecided run with the same inputs is abandoned."""
    plan = plan_resume([record(1, RunState.POSTED), record(2, RunState.STARTED)], TONIGHT)
    assert plan.steps == ((1, Step.FINISH), (2, Step.ABANDON))
    assert plan.current == 1


@pytest.mark.parametrize("state", list(RunState), ids=str)
def test_only_evaluated_and_posted_runs_are_decided(state: RunState) -> None:
    assert state.is_decided == (state in (RunState.EVALUATED, RunState.POSTED))
    assert state.is_open == (state not in (RunState.COMPLETED, RunState.FAILED))


def test_same_inputs_compares_recorded_hashes_not_their_order() -> None:
    reordered = dict(reversed(list(TONIGHT.sources.items())))
    assert same_inputs(record(1, RunState.INGESTED, sources=reordered), TONIGHT)
