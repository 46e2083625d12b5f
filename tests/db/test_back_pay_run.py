"""Back-pay in the nightly run, on SQLite and PostgreSQL: a past period is decided as of its
last day over the night's staged files (exactly what a run of that day decides over them),
paid once as grants for the keys the ledger never held, and a child first seen later is
paid its past year on the night it appears, nothing else changing."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from sqlalchemy import Engine, select

from disburse.cli import main
from jobs.catalogue import load_source_catalogue
from jobs.evaluate import evaluate
from jobs.ingest import staged_dir
from jobs.policies import features_path, load_policies
from jobs.run import RunRequest, run_nightly_on
from ledgers.runs import get_run
from ledgers.schema import Transfer

POLICY = "childcare-subsidy"
PAST = "2025"


def night(engine: Engine, data: Path, store: Path, as_of: dt.date) -> int:
    cat = load_source_catalogue()
    out = run_nightly_on(
        engine,
        RunRequest(data, as_of, store, features_path(None)),
        catalogue=cat,
        pset=load_policies(cat),
    )
    return out.run_id


def posted(engine: Engine, run_id: int) -> pl.DataFrame:
    t = Transfer.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.c.kind, t.c.benefit_period, t.c.entity, t.c.amount_fen).where(
                t.c.run_id == run_id, t.c.policy_id == POLICY
            )
        ).all()
    return pl.DataFrame(
        [tuple(r) for r in rows],
        schema=["kind", "benefit_period", "entity", "amount_fen"],
        orient="row",
    )


def test_back_pay_through_the_nightly_run(clean_city: Path, engine: Engine, tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    shutil.copytree(clean_city, data)
    # One child entitled for 2025 is missing from the first night's register.
    persons = pl.read_parquet(clean_city / "persons.parquet")
    full = evaluate_once(clean_city, tmp_path)
    late = full.sort("entity_id")["entity_id"][0]
    persons.filter(pl.col("person_id") != late).write_parquet(data / "persons.parquet")

    first = night(engine, data, store, dt.date(2026, 3, 15))
    run = get_run(engine, first)
    assert run is not None
    assert run.archive is not None
    assert run.archive.back_pay_claims is not None
    # Decided as a night of 2025-12-31 over the same staged files decides.
    claims = pl.read_parquet(run.archive.back_pay_claims.path)
    assert set(claims["as_of"]) == {dt.date(2025, 12, 31)}
    same_day = evaluate(staged_dir(store, first), load_policies(load_source_catalogue()),
                        dt.date(2025, 12, 31), only=POLICY).filter(pl.col("eligible"))  # fmt: skip
    assert claims.filter(pl.col("policy_id") == POLICY).drop("as_of").equals(same_day)
    got = posted(engine, first)
    past = got.filter(pl.col("benefit_period") == PAST)
    assert past.height > 0
    assert set(past["kind"]) == {"grant"}
    assert set(past["entity"]) == set(same_day["entity_id"])
    assert late not in set(past["entity"])

    # The next night, the child is in the register: paid 2026 and, as back-pay, 2025;
    # nothing else of 2025 is posted again.
    shutil.copyfile(clean_city / "persons.parquet", data / "persons.parquet")
    second = night(engine, data, store, dt.date(2026, 3, 16))
    again = posted(engine, second)
    assert set(again.filter(pl.col("benefit_period") == PAST)["entity"]) == {late}
    assert set(again.filter(pl.col("benefit_period") == PAST)["kind"]) == {"grant"}
    assert late in set(again.filter(pl.col("benefit_period") == "2026")["entity"])

    # A third night with nothing changed posts nothing for either year.
    third = night(engine, data, store, dt.date(2026, 3, 17))
    assert posted(engine, third).height == 0

    # The back-pay is explained as of its day, with the other period named.
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(
        main,
        ["explain", "--policy", POLICY, "--entity", late, "--run", str(second),
         "--period", PAST, "--db", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "benefit period 2025" in result.output
    assert "decided as of its last day (2025-12-31)" in result.output
    assert "the run also decided 2026" in result.output
    assert late not in result.output  # masked
    wrong = CliRunner().invoke(
        main,
        ["explain", "--policy", POLICY, "--entity", late, "--run", str(second),
         "--period", "2023", "--db", url],
    )  # fmt: skip
    assert wrong.exit_code != 0
    assert "did not decide childcare-subsidy for benefit period '2023'" in wrong.output


def evaluate_once(city: Path, tmp_path: Path) -> pl.DataFrame:
    """The children entitled for 2025 who are also entitled now (a scratch SQLite night
    over the full city): one of them is the child the test leaves out at first."""
    from ledgers.db import open_engine

    store = tmp_path / "scratch-store"
    with open_engine(f"sqlite:///{tmp_path / 'scratch.db'}", init=True) as scratch:
        run_id = night(scratch, city, store, dt.date(2026, 3, 15))
    pset = load_policies(load_source_catalogue())
    staged = staged_dir(store, run_id)
    past = evaluate(staged, pset, dt.date(2025, 12, 31), only=POLICY).filter(pl.col("eligible"))
    now = evaluate(staged, pset, dt.date(2026, 3, 15), only=POLICY).filter(pl.col("eligible"))
    return past.join(now.select("entity_id"), on="entity_id", how="semi")


def test_a_policy_that_has_ended_still_pays_back_pay_in_its_window(
    clean_city: Path, engine: Engine, tmp_path: Path
) -> None:
    """The childcare subsidy as if it had ended with 2025, its claims open until the 31st
    of March: a night in February pays 2025 only; a night in April pays nothing."""
    folder = tmp_path / "policies"
    folder.mkdir()
    root = Path(__file__).resolve().parents[2] / "policies"
    for name in ("features.yaml", "sources.yaml"):
        shutil.copy(root / name, folder)
    text = (root / "childcare_subsidy.yaml").read_text()
    text = text.replace("valid: {from: 2025-01-01}", "valid: {from: 2025-01-01, until: 2025-12-31}")
    text = text.replace("  periods: 3 ", "  periods: 1\n  until: 03-31 ")
    text = text[: text.index("\ntests:")] + "\n"  # its worked examples are of 2026
    (folder / "childcare_subsidy.yaml").write_text(text)
    cat = load_source_catalogue()
    pset = load_policies(cat, [folder])

    def night_of(as_of: dt.date) -> int:
        out = run_nightly_on(
            engine,
            RunRequest(clean_city, as_of, tmp_path / "store", folder / "features.yaml"),
            catalogue=cat,
            pset=pset,
        )
        return out.run_id

    first = night_of(dt.date(2026, 2, 10))
    got = posted(engine, first)
    assert got.height > 0
    assert set(got["benefit_period"]) == {PAST}
    run = get_run(engine, first)
    assert run is not None
    assert run.summary is not None
    assert set(run.summary["policies"]) == {f"{POLICY}@{PAST}"}
    url = engine.url.render_as_string(hide_password=False)
    entity = got["entity"][0]
    told = CliRunner().invoke(
        main, ["explain", "--policy", POLICY, "--entity", entity, "--db", url, "--catalogue",
               str(folder)],
    )  # fmt: skip
    assert told.exit_code == 0, told.output
    assert "back-pay: the past period 2025" in told.output
    report = CliRunner().invoke(
        main, ["report", "--run", str(first), "--out", str(tmp_path / "r.html"), "--db", url,
               "--catalogue", str(folder)],
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    # After the window closed there is nothing to run.
    late = CliRunner().invoke(
        main, ["run", "--data", str(clean_city), "--as-of", "2026-04-01", "--db", url,
               "--store", str(tmp_path / "store"), "--policies", str(folder)],
    )  # fmt: skip
    assert late.exit_code != 0
    assert "no policy is valid on 2026-04-01" in late.output
