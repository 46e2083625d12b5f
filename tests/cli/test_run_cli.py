"""The batch's commands as finance and engineers type them: run, demo, bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from disburse.cli import main
from disburse.progress import LogProgress


def test_run_prints_a_summary_and_logs_each_phase_when_not_on_a_terminal(
    city: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    args = ["run", "--data", str(city), "--as-of", "2026-03-15", "--db", db]
    out = CliRunner().invoke(main, [*args, "--store", str(tmp_path / "s")])
    assert out.exit_code == 0, out.output
    assert "run 1 as of 2026-03-15: completed" in out.stdout
    assert "job-stabilisation-refund" in out.stdout
    for phase in ("ingest", "evaluate", "allocate", "post", "summary"):
        assert f"{phase}: done in" in out.stderr
    assert "rows (" in out.stderr
    assert "peak memory" in out.stderr


def test_run_json_has_the_promised_fields(city: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    args = ["run", "--data", str(city), "--as-of", "2026-03-15", "--db", db, "--json"]
    out = CliRunner().invoke(main, [*args, "--store", str(tmp_path / "s")])
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert r["run_id"] == 1
    assert r["state"] == "completed"
    assert set(r["phases"]) == {"ingest", "evaluate", "allocate", "post", "summary"}
    assert all(
        {"seconds", "rows_per_second", "peak_rss_mb"} <= set(p) for p in r["phases"].values()
    )
    job = r["policies"]["job-stabilisation-refund"]
    assert {"evaluated", "eligible", "entitled", "entitled_fen", "posted"} <= set(job)
    assert r["totals"]["entitled_fen"] == sum(p["entitled_fen"] for p in r["policies"].values())


def test_run_errors_speak_to_the_person(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main,
        [
            "run",
            "--data",
            str(tmp_path / "nowhere"),
            "--as-of",
            "2026-03-15",
            "--db",
            f"sqlite:///{tmp_path / 'l.db'}",
        ],
    )
    assert out.exit_code == 1
    assert "does not exist" in out.output
    assert "Traceback" not in out.output
    out = CliRunner().invoke(
        main,
        [
            "run",
            "--data",
            str(tmp_path),
            "--as-of",
            "2020-01-01",
            "--db",
            f"sqlite:///{tmp_path / 'l.db'}",
        ],
    )
    assert out.exit_code == 1
    assert "no policy is valid on 2020-01-01" in out.output


def test_log_progress_lines() -> None:
    lines: list[str] = []
    from jobs.progress import PhaseTiming

    p = LogProgress(write=lines.append)
    p.phase("post").status("42 keys")
    p.done("post", PhaseTiming(seconds=2.0, rows=10, peak_rss_mb=12.0))
    assert lines[0].endswith("post: started")
    assert lines[1].endswith("post: 42 keys")
    assert lines[2].endswith("post: done in 2.0 s, 10 rows (5/s), peak memory 12 MiB")


def test_demo_runs_a_city_end_to_end(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main, ["demo", "--out", str(tmp_path / "demo"), "--enterprises", "200", "--persons", "1000"]
    )
    assert out.exit_code == 0, out.output
    assert ": completed" in out.stdout
    assert (tmp_path / "demo" / "disburse.db").is_file()
    again = CliRunner().invoke(
        main,
        [
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--enterprises",
            "200",
            "--persons",
            "1000",
            "--json",
        ],
    )
    assert json.loads(again.stdout)["totals"]["transfers"] == 0  # nothing changed


def test_bench_reports_phases_and_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISBURSE_BENCH_CACHE", str(tmp_path / "cache"))
    out = CliRunner().invoke(main, ["bench", "--enterprises", "300", "--persons", "1500", "--json"])
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert r["first_run"]["transfers"] > 0
    assert r["second_run"]["transfers"] == 0
    assert r["baseline_ratio"] > 0
    assert r["duckdb_ratio"] > 0
    assert r["same_results_polars"] is True
    assert r["same_results_duckdb"] is True
    assert r["population"]["cached"] is False
    for phase in r["first_run"]["phases"].values():
        assert phase["seconds"] >= 0
        assert phase["peak_rss_mb"] > 0
    small = ["bench", "--enterprises", "300", "--persons", "1500"]
    cached = CliRunner().invoke(main, [*small, "--payments", "500", "--json", "--no-baselines"])
    again = json.loads(cached.stdout)
    assert again["population"]["cached"] is True
    assert (again["baseline_ratio"], again["duckdb_ratio"]) == (None, None)
    assert again["baselines"] == "not compared (--no-baselines)"
    assert "same_results_polars" not in again
    text = CliRunner().invoke(main, [*small, "--no-baselines", "--quiet"])
    assert text.exit_code == 0, text.output
    assert "not compared with the hand-written baselines (--no-baselines)" in text.stdout
    assert "first run:" in text.stdout
    files = again["payments"]
    assert files["pain.001 written and validated"]["n"] == 500
    assert files["pain.002 read and validated"]["statuses"] == 500
    assert files["pain.001 written and validated"]["rows_per_second"] > 0


@pytest.mark.parametrize("command", ["run", "simulate"])
def test_a_policy_whose_own_examples_fail_is_not_run(
    command: str, city: Path, tmp_path: Path
) -> None:
    """An officer's worked example that does not hold stops run and simulate (before
    anything is written), naming the example, as `policy check` would."""
    root = Path(__file__).resolve().parents[2] / "policies"
    policies = tmp_path / "policies"
    policies.mkdir()
    for f in root.glob("*.yaml"):
        text = f.read_text()
        if f.name == "job_stabilisation.yaml":
            assert "amount: 9000 yuan" in text
            text = text.replace("amount: 9000 yuan", "amount: 9001 yuan", 1)
        (policies / f.name).write_text(text)
    db = tmp_path / "l.db"
    args = [command, "--data", str(city), "--as-of", "2026-03-15", "--policies", str(policies)]
    if command == "run":
        args += ["--db", f"sqlite:///{db}", "--store", str(tmp_path / "s")]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output
    assert "job_stabilisation.yaml:" in out.output
    assert ": E124 worked example" in out.output
    assert "9,001.00 yuan" in out.output
    assert not db.exists()  # refused before the ledger was opened: nothing written
