"""policy check, features and simulate through the command line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from disburse.cli import main
from tests import minicity

ROOT = Path(__file__).resolve().parents[2]


def test_policy_check_passes_on_the_shipped_policies() -> None:
    result = CliRunner().invoke(main, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert "0 problem(s)" in result.output


def test_a_failing_case_shows_given_expected_actual_and_the_deciding_condition(
    tmp_path: Path,
) -> None:
    text = (ROOT / "policies" / "graduate_hiring.yaml").read_text()
    broken = text.replace(
        "expect: {eligible: true, amount: 4500 yuan}", "expect: {eligible: true, amount: 4000 yuan}"
    )
    path = tmp_path / "graduate_hiring.yaml"
    path.write_text(broken)
    result = CliRunner().invoke(main, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert ": E124 FAIL graduate-hiring-subsidy: three graduates hired" in result.output
    assert (
        "given:    status=active, graduates_hired=3, months_in_arrears=0, has_bank_account=True"
        in result.output
    )
    assert "expected: eligible=True, amount=4,000.00 yuan" in result.output
    assert "actual:   eligible=True, amount=4,500.00 yuan" in result.output
    assert "decided by: every condition held (active, hired-graduates" in result.output


def test_features_lists_the_catalogue() -> None:
    result = CliRunner().invoke(main, ["features", "--json"])
    assert result.exit_code == 0
    names = {(f["entity"], f["name"]) for f in json.loads(result.output)["features"]}
    assert {
        ("enterprise", "ui_premium_paid"),
        ("person", "birth_on"),
        ("enterprise", "graduates_hired"),
    } <= names


def test_simulate_json_and_against(tmp_path: Path) -> None:
    data = minicity.write(tmp_path / "data")
    old = tmp_path / "old.yaml"
    old.write_text(
        (ROOT / "policies" / "job_stabilisation.yaml")
        .read_text()
        .replace("{from: 2026-01-01, value: 60%", "{from: 2026-01-01, value: 50%")
    )
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--data",
            str(data),
            "--as-of",
            "2026-03-15",
            "--policy",
            "job-stabilisation-refund",
            "--against",
            str(old),
            "--json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    s = report["policies"]["job-stabilisation-refund"]
    assert set(report["policies"]) == {"job-stabilisation-refund"}
    # The one eligible micro firm paid 300.00 yuan of premium in the window: 60% now, 50% before.
    assert (s["eligible"], s["amount_fen"]) == (1, 18000)
    assert s["budget_fen"] == 5_000_000_000
    assert s["by_segment"] == {"micro": {"eligible": 1, "amount_fen": 18000}}
    a = s["against"]
    assert (a["old_amount_fen"], a["gainers"], a["gained_fen"], a["losers"]) == (15000, 1, 3000, 0)
    # Identifiers are masked: the firm's credit code shows its first 6 and last 2 characters.
    firm = minicity.credit_codes(3)[0]
    assert a["largest_changes"][0]["entity"] == firm[:6] + "*" * 10 + firm[-2:]
    assert firm not in result.output
    assert report["sources"]["enterprises"]["rows"] == 3


def test_simulate_unknown_policy_is_a_clean_error(tmp_path: Path) -> None:
    data = minicity.write(tmp_path / "data")
    result = CliRunner().invoke(
        main, ["simulate", "--data", str(data), "--as-of", "2026-03-15", "--policy", "nope"]
    )
    assert result.exit_code == 1
    assert "no policy 'nope'" in result.output
    assert "Traceback" not in result.output
