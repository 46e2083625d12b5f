"""Source files ingest cannot read: a positioned message with the fix, and nothing written.

Each case writes the mini city with one broken file and ingests it, on SQLite and
PostgreSQL, on its own and as a nightly run: the message names the file and the line
(CSV) or the column and row group (Parquet), the command exits 1 without a traceback,
and no run row, snapshot, quarantine row or staged file is left (a nightly run's row
ends failed with the reason).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from disburse.cli import main
from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.ingest import ingest
from ledgers.schema import QuarantinedRow, Run, SourceSnapshot
from tests import minicity

AS_OF = dt.date(2026, 1, 1)


def _gbk(data: Path) -> None:
    path = data / "enterprises.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))


def _extra_field(data: Path) -> None:
    path = data / "tax_ratings.csv"
    lines = path.read_text().splitlines()
    lines[2] += ",oops"
    path.write_text("\n".join(lines) + "\n")


def _unclosed_quote(data: Path) -> None:
    path = data / "enterprises.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("乙商贸有限公司", '"乙商贸有限公司')
    path.write_text("\n".join(lines) + "\n")


def _corrupt_page(data: Path) -> None:
    path = data / "tax_monthly.parquet"
    minicity.frames()["tax_monthly"].write_parquet(
        path, compression="uncompressed", statistics=False
    )
    offset = pq.ParquetFile(path).metadata.row_group(0).column(2).data_page_offset
    raw = bytearray(path.read_bytes())
    for i in range(offset + 2, offset + 40):  # the page header of tax_paid_fen
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _empty_csv(data: Path) -> None:
    (data / "graduates.csv").write_bytes(b"")


def _truncated_parquet(data: Path) -> None:
    path = data / "tax_monthly.parquet"
    path.write_bytes(path.read_bytes()[:300])


CASES = {
    "empty_csv": (
        "csv",
        _empty_csv,
        "{data}/graduates.csv: E162 source 'graduates': the file is empty: a CSV file has at "
        "least its header row",
    ),
    "truncated_parquet": (
        "parquet",
        _truncated_parquet,
        "{data}/tax_monthly.parquet: E160 source 'tax_monthly': the file is not a readable "
        "Parquet file",
    ),
    "gbk": (
        "csv",
        _gbk,
        "{data}/enterprises.csv:2: E161 source 'enterprises': the file is not UTF-8 "
        "(line 2, column 'name', byte 0xBC); it looks like GBK\n"
        "  fix: convert it with `iconv -f GBK -t UTF-8 enterprises.csv > utf8-enterprises.csv`",
    ),
    "extra_field": (
        "csv",
        _extra_field,
        "{data}/tax_ratings.csv:3: E162 source 'tax_ratings': the row has 4 fields where the "
        "header has 3\n  fix: a value holding a comma must be in double quotes",
    ),
    "unclosed_quote": (
        "csv",
        _unclosed_quote,
        "{data}/enterprises.csv:3: E162 source 'enterprises': a double quote opened in the row "
        "that starts on this line is never closed",
    ),
    "corrupt_page": (
        "parquet",
        _corrupt_page,
        "{data}/tax_monthly.parquet: E160 source 'tax_monthly': column 'tax_paid_fen', row group "
        "1 of 1 (rows 1 to 3), cannot be decoded: the file is damaged",
    ),
}


def _broken(tmp_path: Path, case: str) -> tuple[Path, str]:
    fmt, spoil, expected = CASES[case]
    data = minicity.write(tmp_path / "data", fmt=fmt)
    spoil(data)
    return data, expected.format(data=data)


def _nothing_written(engine: Engine, store: Path, *, runs: int = 0) -> None:
    with engine.connect() as conn:
        states = conn.execute(select(Run.state)).scalars().all()
        assert states == ["failed"] * runs
        assert conn.execute(select(func.count()).select_from(SourceSnapshot)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one() == 0
    assert [p for p in store.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_file_is_named_with_its_position(
    tmp_path: Path, engine: Engine, case: str
) -> None:
    data, expected = _broken(tmp_path, case)
    store = tmp_path / "store"
    with pytest.raises(JobError) as info:
        ingest(data, AS_OF, engine=engine, store=store, catalogue=load_source_catalogue())
    assert expected in info.value.render()
    _nothing_written(engine, store)


@pytest.mark.parametrize("case", sorted(CASES))
def test_nightly_run_on_an_unreadable_file_fails_cleanly(
    tmp_path: Path, db_url: str, engine: Engine, case: str
) -> None:
    """`disburse run`: exit 1, the message, no traceback; the run row ends failed with the
    reason, and no staged file is left."""
    data, expected = _broken(tmp_path, case)
    store = tmp_path / "store"
    args = ["run", "--data", str(data), "--as-of", "2026-03-15", "--db", db_url]
    result = CliRunner().invoke(main, [*args, "--store", str(store), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert expected.splitlines()[0] in result.output
    _nothing_written(engine, store, runs=1)
    with engine.connect() as conn:
        message = conn.execute(select(Run.message)).scalar_one()
    assert message.startswith("failed while ingesting, nothing posted: ")
    assert expected.splitlines()[0] in message


def test_nul_byte_in_a_quarantined_value_is_stored_escaped(tmp_path: Path, engine: Engine) -> None:
    """PostgreSQL's text cannot hold a NUL byte: the quarantined value keeps it as \\x00, the
    row's JSON as \\u0000, and the ingest completes."""
    frames = minicity.frames()
    enterprises = frames["enterprises"].with_columns(
        pl.Series("region_code", ["330106", "33\x000108", "330106"])
    )
    data = minicity.write(tmp_path / "data", {"enterprises": enterprises})
    result = ingest(
        data, AS_OF, engine=engine, store=tmp_path / "store", catalogue=load_source_catalogue()
    )
    assert result.sources["enterprises"].by_rule == {"unknown_region": 1}
    with engine.connect() as conn:
        value, row_json = conn.execute(
            select(QuarantinedRow.value, QuarantinedRow.row_json).where(
                QuarantinedRow.source == "enterprises"
            )
        ).one()
        assert conn.execute(select(Run.state)).scalar_one() == "ingested"
    assert value == "33\\x000108"
    assert json.loads(row_json)["region_code"] == "33\x000108"


def test_a_failed_record_keeps_no_run_and_no_staged_file(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the transaction that records the ingest fails, it is rolled back whole (the run row
    of an ingest of its own is in it) and the staged files it moved into place are removed."""
    import jobs.ingest

    def refuse(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the database refused the quarantine")

    monkeypatch.setattr(jobs.ingest, "bulk_insert", refuse)
    frames = minicity.frames()
    tax = pl.concat([frames["tax_monthly"], frames["tax_monthly"].head(1)])  # a duplicate key
    data = minicity.write(tmp_path / "data", {"tax_monthly": tax})
    store = tmp_path / "store"
    with pytest.raises(RuntimeError, match="refused the quarantine"):
        ingest(data, AS_OF, engine=engine, store=store, catalogue=load_source_catalogue())
    _nothing_written(engine, store)
