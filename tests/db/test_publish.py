"""Publishing a run's new entitlements (issue 19.1), on SQLite and PostgreSQL: the notice
lists exactly what the run granted, masks every person, counts its deadline in working
days over the holiday calendar, is recorded once, and is written again byte for byte."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from disburse.cli import main
from jobs.catalogue import load_source_catalogue
from jobs.errors import JobError
from jobs.policies import features_path, load_policies
from jobs.publish import new_entitlements, publish
from jobs.run import RunRequest, run_nightly_on
from ledgers.objections import notices


@pytest.fixture
def ran(clean_city: Path, engine: Engine, tmp_path: Path) -> int:
    cat = load_source_catalogue()
    out = run_nightly_on(
        engine,
        RunRequest(clean_city, dt.date(2026, 3, 15), tmp_path / "store", features_path(None)),
        catalogue=cat,
        pset=load_policies(cat),
    )
    return out.run_id


def test_a_notice_lists_the_run_s_grants_masked_with_its_deadline(
    ran: int, engine: Engine, clean_city: Path, tmp_path: Path
) -> None:
    out = tmp_path / "notice.html"
    # Friday 13 February 2026, the eve of the Spring Festival break (15-23 February, with
    # Saturday the 14th and the 28th worked): the 14th, then the 24th to the 27th.
    done = publish(engine, ran, out, published_on=dt.date(2026, 2, 13))
    assert done.working_days == 5  # the job-stabilisation refund's notice rule
    assert done.deadline == dt.date(2026, 2, 27)
    granted = new_entitlements(engine, ran)
    assert done.entitlements == granted.height > 300
    assert done.amount_fen == int(granted["amount_fen"].sum())
    html, csv = out.read_text(encoding="utf-8"), done.csv.read_text(encoding="utf-8-sig")
    assert "2026-02-27" in html
    persons = pl.read_parquet(clean_city / "persons.parquet")["person_id"].to_list()
    assert not [p for p in persons if p in html or p in csv]
    firm = granted.filter(pl.col("policy_id") == "job-stabilisation-refund")["entity"][0]
    assert firm in csv  # a credit code is public: printed whole
    with engine.connect() as conn:
        recorded = notices(conn)
    assert recorded["run_id"].to_list() == [ran]
    assert recorded["deadline"].to_list() == [dt.date(2026, 2, 27)]
    assert recorded["csv_sha256"][0] == hashlib.sha256(done.csv.read_bytes()).hexdigest()

    # Published again: the same files, nothing recorded anew; another window: refused.
    first = (out.read_bytes(), done.csv.read_bytes())
    out.unlink()
    again = publish(engine, ran, out)
    assert again.again
    assert again.published_on == dt.date(2026, 2, 13)
    assert (out.read_bytes(), again.csv.read_bytes()) == first
    with pytest.raises(JobError, match="published once"):
        publish(engine, ran, out, days=7)


def test_publish_from_the_command_line(ran: int, engine: Engine, tmp_path: Path) -> None:
    url = engine.url.render_as_string(hide_password=False)
    out = tmp_path / "n.html"
    result = CliRunner().invoke(
        main,
        ["publish", "--run", str(ran), "--out", str(out), "--on", "2026-03-16", "--days", "7",
         "--db", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "objections until 2026-03-25 (7 working days)" in result.output
    bad = CliRunner().invoke(main, ["publish", "--run", "99", "--out", str(out), "--db", url])
    assert bad.exit_code != 0
    assert "run 99 is not a nightly run" in bad.output
    assert "Traceback" not in bad.output
