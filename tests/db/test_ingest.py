"""Ingest on SQLite and PostgreSQL: accounting, quarantine reasons, surrogate keys, bad input."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.ingest import IngestResult, ingest
from jobs.staged import scan_staged
from jobs.validate import quarantine_rules
from ledgers.schema import QuarantinedRow, Run, SourceSnapshot
from tests import minicity

AS_OF = dt.date(2026, 1, 1)


def _ingest(data: Path, engine: Engine, store: Path) -> IngestResult:
    return ingest(data, AS_OF, engine=engine, store=store, catalogue=load_source_catalogue())


def _validation_paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Watch how ingest validates each source: "memory", or "streamed" when its rows went
    through a scratch file on disk (checked as the file is written, before ingest deletes it).
    Returns the record, filled in as ingest runs: clear it between two ingests."""
    import jobs.ingest

    real = jobs.ingest._validate_source
    seen: dict[str, str] = {}

    def spy(
        plan: Any, source: Any, catalogue: Any, labels: Any, keys: Any, scratch: Path, **kw: Any
    ) -> Any:
        in_memory = kw["in_memory"]
        out = real(plan, source, catalogue, labels, keys, scratch, **kw)
        name = scratch.name.removeprefix(".").removesuffix(".validated.parquet")
        on_disk = scratch.is_file() and pl.scan_parquet(scratch).select(pl.len()).collect().item()
        seen[name] = "memory" if in_memory else "streamed" if on_disk else "no scratch rows"
        return out

    monkeypatch.setattr(jobs.ingest, "_validate_source", spy)
    return seen


def _manifest(city: Path) -> dict:
    """What the synthetic city's generator wrote: rows per source, the errors it injected."""
    return json.loads((city / "manifest.json").read_text())


def test_clean_city_is_accepted_whole(tmp_path: Path, engine: Engine) -> None:
    data = minicity.write(tmp_path / "data")
    result = _ingest(data, engine, tmp_path / "store")
    for name, rep in result.sources.items():
        assert rep.quarantined == 0, name
        assert rep.rows == rep.accepted == minicity.frames()[name].height
        assert len(rep.sha256) == 64
    with engine.connect() as conn:
        assert conn.execute(select(Run.state)).scalar_one() == "ingested"
        assert conn.execute(select(func.count()).select_from(SourceSnapshot)).scalar_one() == len(
            minicity.frames()
        )
    staged = Path(result.staged_dir)
    enterprises = scan_staged(staged / "enterprises.parquet").collect()
    # Dense integer keys ordered by the credit code.
    assert enterprises.sort("credit_code")["enterprise_sk"].to_list() == [1, 2, 3]
    assert enterprises.schema["registered_on"] == pl.Date
    employment = scan_staged(staged / "employment.parquet").collect()
    # The employer from outside the city is kept, without a surrogate key.
    assert employment["enterprise_sk"].null_count() == 1
    assert employment.schema["from_month"] == pl.Date
    relations = scan_staged(staged / "relations.parquet").collect()
    assert set(relations.columns) >= {"person_sk", "related_person_sk"}
    lists = scan_staged(staged / "credit_lists.parquet").collect()
    assert lists["enterprise_sk"].null_count() == 2
    assert lists["person_sk"].null_count() == 2


def test_bad_rows_are_quarantined_with_their_rule(tmp_path: Path, engine: Engine) -> None:
    frames = minicity.frames()
    ent = frames["enterprises"]
    bad_cc = ent["credit_code"][1][:17] + ("0" if ent["credit_code"][1][17] != "0" else "1")
    enterprises = ent.with_columns(
        pl.Series("credit_code", [ent["credit_code"][0], bad_cc, ent["credit_code"][2]]),
        pl.Series("region_code", ["330106", "330108", "999999"]),
    )
    tax = pl.concat([frames["tax_monthly"], frames["tax_monthly"].head(1)])
    social = frames["social_security_monthly"].with_columns(pl.Series("insured_headcount", [-3, 3]))
    persons = frames["persons"].with_columns(
        pl.Series("birth_on", ["1980-01-01", "1980-02-30", None])
    )
    data = minicity.write(
        tmp_path / "data",
        {
            "enterprises": enterprises,
            "tax_monthly": tax,
            "social_security_monthly": social,
            "persons": persons,
        },
    )
    result = _ingest(data, engine, tmp_path / "store")
    assert result.sources["enterprises"].by_rule == {
        "unknown_region": 1,
        "wrong_check_character": 1,
    }
    assert result.sources["persons"].by_rule == {"missing_required": 1, "unparseable_date": 1}
    # cc[0] repeated for 2025-01: both rows; cc[1] was refused, so its tax row has no enterprise.
    assert result.sources["tax_monthly"].by_rule == {"duplicate_key": 2, "unknown_enterprise": 1}
    # Row 1 has a negative headcount; row 2's enterprise was refused.
    assert result.sources["social_security_monthly"].by_rule == {
        "below_minimum": 1,
        "unknown_enterprise": 1,
    }
    for rep in result.sources.values():
        assert rep.rows == rep.accepted + rep.quarantined
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                QuarantinedRow.row_no,
                QuarantinedRow.column_name,
                QuarantinedRow.value,
                QuarantinedRow.row_json,
            ).where(QuarantinedRow.source == "persons", QuarantinedRow.rule == "unparseable_date")
        ).all()
    assert [(r.row_no, r.column_name, r.value) for r in rows] == [(2, "birth_on", "1980-02-30")]
    assert json.loads(rows[0].row_json)["name"] == "李四"


def test_csv_is_read_as_text_and_parsed(tmp_path: Path, engine: Engine) -> None:
    data = minicity.write(tmp_path / "data", fmt="csv")
    (data / "tax_ratings.csv").write_text(
        (data / "tax_ratings.csv").read_text() + f"{minicity.credit_codes(3)[2]},twenty,A\n"
    )
    result = _ingest(data, engine, tmp_path / "store")
    assert result.sources["tax_ratings"].by_rule == {"not_an_integer": 1}
    assert result.sources["enterprises"].format == "csv"
    assert sum(r.quarantined for r in result.sources.values()) == 1


def _nothing_written(engine: Engine, store: Path) -> None:
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 0
    assert not (store / "runs").exists()
    assert list(store.glob(".ingest-*")) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("missing_file", "source 'graduates': no file graduates.parquet or graduates.csv"),
        (
            "missing_column",
            "source 'tax_monthly' ({data}/tax_monthly.parquet): column 'revenue_fen' is missing",
        ),
        (
            "wrong_type",
            "source 'social_security_monthly' ({data}/social_security_monthly.parquet): column 'insured_headcount' has type Float64, expected int",
        ),
        (
            "unreadable_csv_column",
            "source 'tax_ratings' ({data}/tax_ratings.csv): column 'year' holds no value readable as int",
        ),
    ],
)
def test_bad_files_stop_before_anything_is_written(
    tmp_path: Path, engine: Engine, change: str, expected: str
) -> None:
    data = minicity.write(tmp_path / "data")
    frames = minicity.frames()
    if change == "missing_file":
        (data / "graduates.parquet").unlink()
    elif change == "missing_column":
        frames["tax_monthly"].drop("revenue_fen").write_parquet(data / "tax_monthly.parquet")
    elif change == "wrong_type":
        frames["social_security_monthly"].with_columns(
            pl.col("insured_headcount").cast(pl.Float64)
        ).write_parquet(data / "social_security_monthly.parquet")
    else:
        (data / "tax_ratings.parquet").unlink()
        frames["tax_ratings"].select(
            "credit_code", "rating", pl.col("rating").alias("year")
        ).write_csv(data / "tax_ratings.csv")
    with pytest.raises(JobError) as info:
        ingest(
            data, AS_OF, engine=engine, store=tmp_path / "store", catalogue=load_source_catalogue()
        )
    assert expected.format(data=data) in info.value.render()
    assert "fix:" in info.value.render()
    _nothing_written(engine, tmp_path / "store")


def test_every_injected_error_is_quarantined_with_its_rule(
    city: Path, tmp_path: Path, engine: Engine
) -> None:
    """synth --errors injects every rule the validator has; ingest quarantines exactly the
    injected rows (and the originals of duplicated keys), each under the rule injected."""
    manifest = _manifest(city)
    catalogue = load_source_catalogue()
    assert {i["rule"] for i in manifest["injected"]} == set(quarantine_rules(catalogue))
    expected: dict[tuple[str, int], str] = {}
    for item in manifest["injected"]:
        expected[(item["source"], item["row"] + 1)] = item["rule"]
        if item["rule"] == "duplicate_key":
            expected[(item["source"], item["duplicate_of"] + 1)] = "duplicate_key"
    result = _ingest(city, engine, tmp_path / "store")
    with engine.connect() as conn:
        found = {
            (r.source, r.row_no): r.rule
            for r in conn.execute(
                select(QuarantinedRow.source, QuarantinedRow.row_no, QuarantinedRow.rule)
            )
        }
    assert found == expected
    for name, rep in result.sources.items():
        assert rep.rows == rep.accepted + rep.quarantined
        assert rep.rows == manifest["rows"][name]


def test_streamed_and_in_memory_validation_agree(
    city: Path, tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source larger than DISBURSE_INGEST_MEMORY_ROWS is streamed through a scratch file
    with its references joined on the way; the staged rows and the quarantine are the same
    as when it is validated in memory."""
    results, paths, seen = {}, {}, _validation_paths(monkeypatch)
    for label, limit in (("memory", "100000000"), ("streamed", "0")):
        monkeypatch.setenv("DISBURSE_INGEST_MEMORY_ROWS", limit)
        seen.clear()
        results[label] = _ingest(city, engine, tmp_path / f"store-{label}")
        paths[label] = dict(seen)
    memory, streamed = results["memory"], results["streamed"]
    # Each ingest took the path its limit asks for, for every source.
    everything = set(load_source_catalogue().ordered())
    assert paths["memory"] == dict.fromkeys(everything, "memory")
    assert paths["streamed"] == dict.fromkeys(everything, "streamed")
    assert sum(r.quarantined for r in memory.sources.values()) > 0
    _same_ingest(engine, memory, streamed)


def _same_ingest(engine: Engine, a: IngestResult, b: IngestResult) -> None:
    """Two ingests of the same files: the same counts, staged rows and quarantined rows."""
    assert list(a.sources) == list(b.sources)
    for name, rep in a.sources.items():
        other = b.sources[name]
        assert (rep.rows, rep.accepted, rep.quarantined, rep.by_rule) == (
            other.rows,
            other.accepted,
            other.quarantined,
            other.by_rule,
        ), name
        staged_a = scan_staged(Path(a.staged_dir) / f"{name}.parquet").collect()
        staged_b = scan_staged(Path(b.staged_dir) / f"{name}.parquet").collect()
        assert staged_a.equals(staged_b), name
    with engine.connect() as conn:
        rows = [
            sorted(
                conn.execute(
                    select(
                        QuarantinedRow.source,
                        QuarantinedRow.row_no,
                        QuarantinedRow.column_name,
                        QuarantinedRow.rule,
                        QuarantinedRow.value,
                    ).where(QuarantinedRow.run_id == run)
                ).all()
            )
            for run in (a.run_id, b.run_id)
        ]
    assert rows[0] == rows[1]


def test_memory_rows_setting_must_be_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.ingest import DEFAULT_MEMORY_ROWS, memory_rows

    monkeypatch.delenv("DISBURSE_INGEST_MEMORY_ROWS", raising=False)
    assert memory_rows() == DEFAULT_MEMORY_ROWS
    monkeypatch.setenv("DISBURSE_INGEST_MEMORY_ROWS", "lots")
    with pytest.raises(JobError, match="not a whole number"):
        memory_rows()


def test_sources_side_by_side_agree_with_one_at_a_time(
    city: Path, tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers (the largest sources streamed, so they run alone) stage the same rows and
    quarantine the same rows as one worker taking the sources in order; sources validated
    side by side never hold more rows between them than DISBURSE_INGEST_MEMORY_ROWS."""
    import threading

    import jobs.ingest

    rows = _manifest(city)["rows"]
    sizes = sorted(rows.values())
    results, paths, seen = {}, {}, _validation_paths(monkeypatch)
    real, lock = jobs.ingest._validate_one, threading.Lock()
    running: set[str] = set()
    together: list[set[str]] = []

    def watched(name: str, *args: Any, **kw: Any) -> Any:
        with lock:
            running.add(name)
            together.append(set(running))
        try:
            return real(name, *args, **kw)
        finally:
            with lock:
                running.discard(name)

    monkeypatch.setattr(jobs.ingest, "_validate_one", watched)
    for workers, limit in ((1, "100000000"), (2, str(sizes[-4]))):
        monkeypatch.setenv("DISBURSE_INGEST_WORKERS", str(workers))
        monkeypatch.setenv("DISBURSE_INGEST_MEMORY_ROWS", limit)
        seen.clear()
        results[workers] = _ingest(city, engine, tmp_path / f"store-{workers}")
        paths[workers] = dict(seen)
    one, two = results[1], results[2]
    assert set(paths[1].values()) == {"memory"}
    # The three sources above the limit were streamed, the others validated in memory.
    assert paths[2] == {name: "streamed" if n > sizes[-4] else "memory" for name, n in rows.items()}
    assert list(paths[2].values()).count("streamed") == 3
    pairs = [t for t in together if len(t) > 1]
    assert pairs, "no two sources were validated side by side"
    assert all(sum(rows[n] for n in t) <= sizes[-4] for t in pairs), pairs
    assert list(one.sources) == load_source_catalogue().ordered()
    assert sum(r.quarantined for r in one.sources.values()) > 0
    _same_ingest(engine, one, two)


def test_a_source_failing_beside_another_writes_nothing(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two workers, a source that fails while another is being validated: the error is
    reported, the other finishes, and nothing is kept."""
    monkeypatch.setenv("DISBURSE_INGEST_WORKERS", "2")
    data = minicity.write(tmp_path / "data")
    frames = minicity.frames()
    frames["persons"].with_columns(pl.col("birth_on").cast(pl.String)).with_columns(
        pl.lit("not a date").alias("birth_on")
    ).write_parquet(data / "persons.parquet")
    with pytest.raises(JobError) as info:
        _ingest(data, engine, tmp_path / "store")
    assert "column 'birth_on' holds no value readable as date" in info.value.render()
    _nothing_written(engine, tmp_path / "store")


def test_ingest_workers_setting_must_be_a_positive_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.ingest import DEFAULT_INGEST_WORKERS, ingest_workers

    monkeypatch.delenv("DISBURSE_INGEST_WORKERS", raising=False)
    assert ingest_workers() == DEFAULT_INGEST_WORKERS
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("DISBURSE_INGEST_WORKERS", bad)
        with pytest.raises(JobError, match="not a positive whole number"):
            ingest_workers()
