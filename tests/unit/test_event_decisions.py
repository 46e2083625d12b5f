"""Events decided by durable-rules agree with the batch over the same data.

A synthetic city is staged as a night; random events replace, remove and add rows of
its sources (a new enterprise registered, months of insurance corrected, employment
spells ended, credit-list entries lifted), some of them invalid.  The event path
validates them, decides the entities they affect with durable-rules, and the batch
(Polars) decides a delivery of the same data, the accepted events applied to the
files, staged from scratch: for every affected entity and policy, the same
eligibility, first failing condition, mask, amount and payee.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl
import pytest

from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.evaluate import evaluate
from jobs.events.decide import decide_events, deciders
from jobs.events.overlay import Overlay, stage_all
from jobs.events.stage import EVENT, OP, StagedEvents
from jobs.ingest import _scan, locate_sources, stage
from jobs.policies import load_policies
from tests.minicity import credit_codes

AS_OF = dt.date(2026, 3, 15)
COMPARED = ["eligible", "amount_fen", "reason", "mask", "payee"]
CHANGED = [
    "social_security_monthly",
    "tax_monthly",
    "employment",
    "credit_lists",
    "relations",
    "persons",
    "enterprises",
]


def _raw(data: Path, catalogue: Catalogue) -> dict[str, tuple[pl.DataFrame, str]]:
    return {
        name: (_scan(path, fmt).collect(), fmt)
        for name, (path, fmt) in locate_sources(data, catalogue).items()
    }


def _events(
    raw: dict[str, tuple[pl.DataFrame, str]], catalogue: Catalogue, seed: int
) -> dict[str, pl.DataFrame]:
    """Per source: random events (event_id, op, the columns as text)."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, object]]] = {}
    next_id = 1

    def add(name: str, op: str, row: dict[str, object]) -> None:
        nonlocal next_id
        text = {k: _text(v) for k, v in row.items()}
        out.setdefault(name, []).append({EVENT: next_id, OP: op, **text})
        next_id += 1

    for name in CHANGED:
        frame, _fmt = raw[name]
        source = catalogue.sources[name]
        others = [c for c in frame.columns if c not in source.key]
        for _ in range(12):
            row = frame.row(rng.randrange(frame.height), named=True)
            if source.entity is None and rng.random() < 0.3:
                add(name, "remove", {k: row[k] for k in source.key})
                continue
            column = rng.choice(others)
            row[column] = frame.get_column(column)[rng.randrange(frame.height)]
            add(name, "upsert", row)
    # People born earlier or later than recorded (a corrected registration): some turn 80
    # and take the allowance, some lose it.
    persons = raw["persons"][0]
    for _ in range(10):
        row = persons.row(rng.randrange(persons.height), named=True)
        add("persons", "upsert", {**row, "birth_on": rng.choice(["1940-01-01", "1990-01-01"])})
    # A new enterprise, with its months of insurance.
    enterprise = raw["enterprises"][0].row(0, named=True)
    code = credit_codes(1, seed=seed + 1000)[0]
    add("enterprises", "upsert", {**enterprise, "credit_code": code})
    months = raw["social_security_monthly"][0]
    for row in months.filter(pl.col("credit_code") == months["credit_code"][0]).iter_rows(
        named=True
    ):
        add("social_security_monthly", "upsert", {**row, "credit_code": code})
    return {
        name: pl.DataFrame(rows, infer_schema_length=None).cast(
            {c: pl.String for c in rows[0] if c not in (EVENT, OP)} | {EVENT: pl.Int64}
        )
        for name, rows in out.items()
    }


def _text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _delivered(
    raw: dict[str, tuple[pl.DataFrame, str]],
    events: dict[str, pl.DataFrame],
    accepted: dict[str, StagedEvents],
    catalogue: Catalogue,
    out: Path,
) -> None:
    """The city's files with the accepted events applied, as a bureau would redeliver them."""
    out.mkdir()
    for name, (frame, fmt) in raw.items():
        ev = events.get(name)
        if ev is not None and accepted[name].accepted.height:
            key = list(catalogue.sources[name].key)
            ok = ev.join(accepted[name].accepted.select(EVENT), on=EVENT, how="semi")
            last = ok.sort(EVENT).unique(key, keep="last", maintain_order=True)
            text = frame.cast(dict.fromkeys(frame.columns, pl.String))
            kept = text.join(last.select(key), on=key, how="anti", nulls_equal=True)
            upserts = last.filter(pl.col(OP) == "upsert").select(frame.columns)
            merged = pl.concat([kept, upserts])
            frame = merged if fmt == "csv" else merged.cast(frame.schema)  # type: ignore[arg-type]
        if fmt == "csv":
            frame.write_csv(out / f"{name}.csv")
        else:
            frame.write_parquet(out / f"{name}.parquet")


@pytest.mark.parametrize("seed", [1, 2])
def test_events_decide_as_the_batch_over_the_same_data(
    city: Path, tmp_path: Path, seed: int
) -> None:
    catalogue = load_source_catalogue()
    pset = load_policies(catalogue)
    policies = pset.active(AS_OF)
    night = tmp_path / "night"
    stage(city, night, catalogue=catalogue)
    raw = _raw(city, catalogue)
    events = _events(raw, catalogue, seed)
    overlay = Overlay(night, catalogue, 1)
    staged = overlay.stage(events)
    accepted = {n: s.accepted for n, s in staged.items() if s.accepted.height}
    quarantined = sum(s.quarantined.height for s in staged.values())
    total = sum(e.height for e in events.values())
    assert sum(a.height for a in accepted.values()) + quarantined == total  # none lost

    replaced = overlay.lay(accepted)
    got = decide_events(
        overlay, pset, policies, AS_OF, accepted, replaced, deciders(policies)
    ).decisions
    assert got.height > 0
    assert got["eligible"].any()
    # The events changed decisions: were the night's decisions given back, this would fail.
    night_decided = (
        evaluate(night, pset, AS_OF)
        .join(got.select("policy_id", "entity_id"), on=["policy_id", "entity_id"], how="semi")
        .sort("policy_id", "entity_id")
    )
    assert not night_decided.select(COMPARED).equals(
        got.sort("policy_id", "entity_id").select(COMPARED)
    )

    delivered = tmp_path / "delivered"
    _delivered(raw, events, staged, catalogue, delivered)
    restaged = tmp_path / "restaged"
    stage(delivered, restaged, catalogue=catalogue)
    batch = (
        evaluate(restaged, pset, AS_OF)
        .join(got.select("policy_id", "entity_id"), on=["policy_id", "entity_id"], how="semi")
        .sort("policy_id", "entity_id")
    )
    mine = got.sort("policy_id", "entity_id")
    assert batch.select("policy_id", "entity_id").equals(mine.select("policy_id", "entity_id"))
    assert batch.select(COMPARED).equals(mine.select(COMPARED))
    # And none left out: every decision the events changed is one they decided.
    keys = ["policy_id", "entity_id"]
    changed = evaluate(restaged, pset, AS_OF).join(
        evaluate(night, pset, AS_OF), on=[*keys, *COMPARED], how="anti", nulls_equal=True
    )
    assert changed.height > 0
    missed = changed.join(got.select(keys), on=keys, how="anti")
    assert missed.height == 0, missed.select(*keys, *COMPARED).head(10)


def test_a_bad_event_is_quarantined_with_its_reason(city: Path, tmp_path: Path) -> None:
    catalogue = load_source_catalogue()
    night = tmp_path / "night"
    stage(city, night, catalogue=catalogue)
    raw = _raw(city, catalogue)
    enterprise = {k: _text(v) for k, v in raw["enterprises"][0].row(0, named=True).items()}
    code = credit_codes(1, seed=99)[0]
    month = {k: _text(v) for k, v in raw["social_security_monthly"][0].row(0, named=True).items()}
    events = {
        "enterprises": pl.DataFrame(
            [
                {EVENT: 1, OP: "upsert", **enterprise, "credit_code": code},
                {EVENT: 2, OP: "remove", "credit_code": enterprise["credit_code"]},
                {EVENT: 3, OP: "delete", **enterprise},
                {EVENT: 4, OP: "upsert", **enterprise, "credit_code": code[:-1] + "0"},
            ]
        ),
        "social_security_monthly": pl.DataFrame(
            [
                {EVENT: 5, OP: "upsert", **month, "credit_code": code},  # the one just registered
                {EVENT: 6, OP: "upsert", **month, "credit_code": credit_codes(1, seed=98)[0]},
                {EVENT: 7, OP: "upsert", **month, "month": "2025-13"},
            ]
        ),
    }
    staged = stage_all(events, night, catalogue)
    rules = {
        e: r for s in staged.values() for e, r in s.quarantined.select(EVENT, "rule").iter_rows()
    }
    accepted = sorted(e for s in staged.values() for e in s.accepted[EVENT].to_list())
    assert accepted == [1, 5]
    assert rules == {
        2: "entity_removed",
        3: "unknown_operation",
        4: "wrong_check_character",
        6: "unknown_enterprise",
        7: "unparseable_month",
    }
    assert all(s.quarantined["reason"].is_not_null().all() for s in staged.values())
    new_sk = staged["enterprises"].accepted["enterprise_sk"].item()
    assert staged["social_security_monthly"].accepted["enterprise_sk"].item() == new_sk
