"""Staged views: a Parquet delivery is kept as delivered plus a narrow file, and read back
as the same rows and columns a full rewrite gives (`jobs.staged`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.ingest import copy_pinned, sha256_file, stage
from jobs.staged import (
    ACCEPTED,
    DELIVERED_SUFFIX,
    is_staged,
    scan_staged,
    sql_relation,
    staged_file,
    view_of,
)
from tests import minicity


@pytest.fixture(scope="module")
def both(city: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The broken synthetic city staged twice: from its Parquet files (views) and from the
    same rows written as CSV (every column text, every source rewritten)."""
    root = tmp_path_factory.mktemp("views")
    as_csv = root / "csv"
    as_csv.mkdir()
    for f in city.glob("*.parquet"):
        pl.read_parquet(f).write_csv(as_csv / f"{f.stem}.csv")
    cat = load_source_catalogue()
    stage(city, root / "from-parquet", catalogue=cat)
    stage(as_csv, root / "from-csv", catalogue=cat)
    return root / "from-parquet", root / "from-csv"


def test_a_parquet_delivery_is_staged_as_a_view_that_reads_as_the_csv_rewrite(
    both: tuple[Path, Path],
) -> None:
    views, rewritten = both
    cat = load_source_catalogue()
    quarantined = 0
    for name in cat.sources:
        view = view_of(staged_file(views, name))
        assert view is not None, name
        assert view_of(staged_file(rewritten, name)) is None, name
        narrow = pl.read_parquet(staged_file(views, name))
        delivered = pl.scan_parquet(views / view.delivered).select(pl.len()).collect().item()
        assert narrow.height == delivered, name  # row for row with the delivery
        quarantined += narrow.height - int(narrow.get_column(ACCEPTED).sum())
        expected = scan_staged(staged_file(rewritten, name)).collect()
        got = scan_staged(staged_file(views, name)).collect()
        assert got.columns == expected.columns, name
        assert_frame_equal(got, expected, check_dtypes=True)
    assert quarantined > 0  # the city's broken rows are masked out of the views


def test_duckdb_reads_a_view_as_polars_does(both: tuple[Path, Path]) -> None:
    views, _ = both
    for name in ("persons", "social_security_monthly", "employment"):
        path = staged_file(views, name)
        with duckdb.connect() as con:
            got: pl.DataFrame = con.sql(f"SELECT * FROM {sql_relation(path)}").pl()
        expected = scan_staged(path).collect()
        assert_frame_equal(got, expected, check_dtypes=False)


def test_only_what_validation_changed_is_in_the_narrow_file(tmp_path: Path) -> None:
    frames = minicity.frames()
    padded = frames["enterprises"].with_columns(pl.col("name").str.pad_end(20))
    data = minicity.write(tmp_path / "data", {"enterprises": padded})
    out = tmp_path / "staged"
    stage(data, out, catalogue=load_source_catalogue())
    view = view_of(staged_file(out, "enterprises"))
    assert view is not None
    narrow = pl.scan_parquet(staged_file(out, "enterprises")).collect_schema().names()
    # Padded names are trimmed, so read from the narrow file; dates are parsed there too.
    assert "name" in narrow
    assert "name" not in view.taken
    assert "registered_on" in narrow
    assert view.taken["credit_code"] == "String"
    assert "credit_code" not in narrow
    staged = scan_staged(staged_file(out, "enterprises")).collect()
    assert staged.get_column("name").to_list() == frames["enterprises"].get_column("name").to_list()
    # The delivery is kept byte for byte, pinned by the digest the snapshot records.
    kept = out / f"enterprises{DELIVERED_SUFFIX}"
    assert kept.read_bytes() == (data / "enterprises.parquet").read_bytes()
    assert view.sha256 == sha256_file(data / "enterprises.parquet")


def test_a_view_without_its_delivered_copy_is_not_reused(tmp_path: Path) -> None:
    data = minicity.write(tmp_path / "data")
    out = tmp_path / "staged"
    stage(data, out, catalogue=load_source_catalogue())
    assert is_staged(staged_file(out, "persons"))
    (out / f"persons{DELIVERED_SUFFIX}").unlink()
    assert not is_staged(staged_file(out, "persons"))


def test_a_file_that_changes_while_it_is_read_is_refused(tmp_path: Path) -> None:
    data = minicity.write(tmp_path / "data")
    src = data / "persons.parquet"
    digest = sha256_file(src)
    shutil.copyfile(data / "enterprises.parquet", src)  # replaced after it was hashed
    with pytest.raises(JobError, match="changed while it was being read"):
        copy_pinned(src, tmp_path / "copy.parquet", digest)
