"""--catalogue DIR and $DISBURSE_CATALOGUE: a catalogue kept apart from the policies.

A district's officer keeps their policy files in a folder of their own and checks
them against the city's catalogue kept elsewhere; an operator runs the night with
it.  Every command that reads features.yaml or sources.yaml takes it, and every way
of giving it wrongly is a message with a code and a path, exit status 1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from disburse.cli import main
from tests import minicity

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
CATALOGUE = ("features.yaml", "sources.yaml")
AS_OF = "2026-03-15"
JOB = "job-stabilisation-refund"


def _invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env={"DISBURSE_CATALOGUE": "", **(env or {})})


def _catalogue(folder: Path, **replace: tuple[str, str]) -> Path:
    """A copy of the shipped catalogue in `folder`; `replace` changes a file's text
    (features_yaml=("old", "new"))."""
    folder.mkdir(parents=True)
    for name in CATALOGUE:
        text = (POLICIES / name).read_text(encoding="utf-8")
        old, new = replace.get(name.replace(".", "_"), ("", ""))
        if old:
            assert old in text
            text = text.replace(old, new, 1)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _own_policies(folder: Path, *names: str) -> Path:
    """A policy folder of one's own: shipped policy files, no catalogue beside them."""
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(POLICIES / name, folder / name)
    return folder


# `status` read from another column: no enterprise is "active" any more.
STATUS_FROM_LEGAL_FORM = (
    "      column: status\n      agg: value\n      description: Registration status",
    "      column: legal_form\n      agg: value\n      description: Registration status",
)


def test_policy_check_against_a_catalogue_kept_elsewhere(tmp_path: Path) -> None:
    city = _catalogue(tmp_path / "city" / "catalogue")
    mine = _own_policies(tmp_path / "mine", "graduate_hiring.yaml", "job_stabilisation.yaml")
    out = _invoke(["policy", "check", str(mine), "--catalogue", str(city)])
    assert out.exit_code == 0, out.output
    assert "2 policies checked, 0 problem(s)" in out.output


def test_a_feature_renamed_in_the_catalogue_shows_in_the_policies(tmp_path: Path) -> None:
    """The policies are checked against the catalogue given, not the shipped one: a feature
    the city renamed is an unknown name in the officer's file, with the new name offered."""
    city = _catalogue(
        tmp_path / "city",
        features_yaml=("    graduates_hired:\n", "    graduates_taken_on:\n"),
    )
    mine = _own_policies(tmp_path / "mine", "graduate_hiring.yaml")
    out = _invoke(["policy", "check", str(mine), "--catalogue", str(city)])
    assert out.exit_code == 1
    assert (
        f"{mine / 'graduate_hiring.yaml'}:25:11: E104 unknown name 'graduates_hired'" in out.output
    )
    assert "fix: did you mean 'graduates_taken_on'?" in out.output
    assert "Traceback" not in out.output
    shipped = _invoke(["policy", "check", str(mine)])
    assert shipped.exit_code == 0, shipped.output


def test_the_environment_gives_the_catalogue_when_the_option_does_not(tmp_path: Path) -> None:
    city = _catalogue(
        tmp_path / "city",
        features_yaml=("    graduates_hired:\n", "    graduates_taken_on:\n"),
    )
    mine = _own_policies(tmp_path / "mine", "graduate_hiring.yaml")
    out = _invoke(["policy", "check", str(mine)], env={"DISBURSE_CATALOGUE": str(city)})
    assert out.exit_code == 1
    assert "did you mean 'graduates_taken_on'?" in out.output
    # The option wins over the environment.
    shipped = _catalogue(tmp_path / "shipped")
    out = _invoke(
        ["policy", "check", str(mine), "--catalogue", str(shipped)],
        env={"DISBURSE_CATALOGUE": str(city)},
    )
    assert out.exit_code == 0, out.output


def test_features_lists_the_catalogue_given(tmp_path: Path) -> None:
    city = _catalogue(
        tmp_path / "city", features_yaml=("    graduates_hired:\n", "    graduates_taken_on:\n")
    )
    out = _invoke(["features", "--json", "--catalogue", str(city)])
    assert out.exit_code == 0, out.output
    names = {f["name"] for f in json.loads(out.output)["features"]}
    assert "graduates_taken_on" in names
    assert "graduates_hired" not in names


def test_sources_lists_the_catalogue_given(tmp_path: Path) -> None:
    city = _catalogue(
        tmp_path / "city",
        sources_yaml=("bureau: education", "bureau: the city's education bureau"),
    )
    out = _invoke(["sources", "--catalogue", str(city)])
    assert out.exit_code == 0, out.output
    assert "graduates  (key: person_id, level; from the city's education bureau)" in out.output


def _simulate(data: Path, *extra: str) -> dict[str, int]:
    args = ["simulate", "--data", str(data), "--as-of", AS_OF, "--policy", JOB, "--json"]
    out = _invoke([*args, "--quiet", *extra])
    assert out.exit_code == 0, out.output
    job = json.loads(out.output)["policies"][JOB]
    return {"eligible": job["eligible"], "amount_fen": job["amount_fen"]}


def test_simulate_with_a_changed_catalogue(tmp_path: Path) -> None:
    data = minicity.write(tmp_path / "data")
    copy = _catalogue(tmp_path / "copy")
    changed = _catalogue(tmp_path / "changed", features_yaml=STATUS_FROM_LEGAL_FORM)
    assert _simulate(data) == {"eligible": 1, "amount_fen": 18000}
    assert _simulate(data, "--catalogue", str(copy)) == {"eligible": 1, "amount_fen": 18000}
    assert _simulate(data, "--catalogue", str(changed)) == {"eligible": 0, "amount_fen": 0}
    mine = _own_policies(tmp_path / "mine", "job_stabilisation.yaml")
    with_mine = ["--policies", str(mine), "--catalogue", str(changed)]
    assert _simulate(data, *with_mine) == {"eligible": 0, "amount_fen": 0}


def test_run_and_explain_with_a_changed_catalogue(tmp_path: Path) -> None:
    """The night runs with the catalogue given: it decides with its features, archives its
    features.yaml, and explain reads the run with it."""
    data = minicity.write(tmp_path / "data")
    changed = _catalogue(tmp_path / "changed", features_yaml=STATUS_FROM_LEGAL_FORM)
    totals = {}
    for label, extra in (("shipped", []), ("changed", ["--catalogue", str(changed)])):
        db = f"sqlite:///{tmp_path / label}.db"
        args = ["run", "--data", str(data), "--as-of", AS_OF, "--db", db, "--json", "--quiet"]
        out = _invoke([*args, "--store", str(tmp_path / f"{label}-store"), *extra])
        assert out.exit_code == 0, out.output
        totals[label] = json.loads(out.stdout)["policies"][JOB]["eligible"]
    assert totals == {"shipped": 1, "changed": 0}
    firm = minicity.credit_codes(3)[0]
    db = f"sqlite:///{tmp_path / 'changed'}.db"
    explain = ["explain", "--policy", JOB, "--entity", firm, "--db", db, "--json"]
    out = _invoke([*explain, "--catalogue", str(changed)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["eligible"] is False


# --- giving the catalogue wrongly -------------------------------------------------------


def test_a_missing_catalogue_folder(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    out = _invoke(["policy", "check", "--catalogue", str(nowhere)])
    assert out.exit_code == 1
    assert f"Error: {nowhere}: E020 no catalogue folder here (given by --catalogue)" in out.output
    assert "fix: give the folder holding features.yaml and sources.yaml" in out.output
    assert "Traceback" not in out.output


def test_a_missing_catalogue_folder_from_the_environment(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    out = _invoke(["policy", "check"], env={"DISBURSE_CATALOGUE": str(nowhere)})
    assert out.exit_code == 1
    assert f"{nowhere}: E020 no catalogue folder here (given by $DISBURSE_CATALOGUE)" in out.output


def test_a_catalogue_file_instead_of_its_folder(tmp_path: Path) -> None:
    city = _catalogue(tmp_path / "city")
    out = _invoke(
        [
            "ingest",
            "--data",
            str(tmp_path),
            "--as-of",
            AS_OF,
            "--catalogue",
            str(city / "sources.yaml"),
        ]
    )
    assert out.exit_code == 1
    assert f"{city / 'sources.yaml'}: E020 is a file, not a catalogue folder" in out.output
    assert f"fix: give its folder, {city}" in out.output


@pytest.mark.parametrize(
    ("present", "missing"),
    [((), "features.yaml and no sources.yaml"), (("features.yaml",), "sources.yaml")],
)
def test_a_catalogue_folder_without_its_files(
    tmp_path: Path, present: tuple[str, ...], missing: str
) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    for name in present:
        shutil.copy(POLICIES / name, folder / name)
    out = _invoke(["policy", "check", "--catalogue", str(folder)])
    assert out.exit_code == 1
    assert (
        f"{folder}: E021 the catalogue folder (given by --catalogue) holds no file {missing}"
        in (out.output)
    )
    assert "fix: a catalogue folder holds both features.yaml and sources.yaml" in out.output


def test_a_policy_folder_with_its_own_feature_catalogue_beside_another(tmp_path: Path) -> None:
    """Two feature catalogues are never mixed: the folder's own and --catalogue's are named
    both; one of the same bytes is no conflict."""
    city = _catalogue(
        tmp_path / "city", features_yaml=("    graduates_hired:\n", "    graduates_taken_on:\n")
    )
    mine = _own_policies(tmp_path / "mine", "graduate_hiring.yaml", "features.yaml")
    out = _invoke(["policy", "check", str(mine), "--catalogue", str(city)])
    assert out.exit_code == 1
    assert (
        f"{mine / 'features.yaml'}: E022 the policy folder has a feature catalogue of its own, "
        f"and --catalogue gives another: {city / 'features.yaml'}"
    ) in out.output
    assert f"move {mine / 'features.yaml'} out of the policy folder" in out.output
    out = _invoke(
        ["run", "--data", str(tmp_path), "--as-of", AS_OF, "--policies", str(mine)],
        env={"DISBURSE_CATALOGUE": str(city)},
    )
    assert out.exit_code == 1
    assert "E022" in out.output
    assert "unset DISBURSE_CATALOGUE" in out.output
    same = _catalogue(tmp_path / "same")
    out = _invoke(["policy", "check", str(mine), "--catalogue", str(same)])
    assert out.exit_code == 0, out.output


def test_features_yaml_naming_what_sources_yaml_lacks_is_positioned(tmp_path: Path) -> None:
    """A relation attribute of a column sources.yaml does not have: once a KeyError."""
    city = _catalogue(
        tmp_path / "city", features_yaml=("hired_in: from_month", "hired_in: hired_month")
    )
    out = _invoke(["policy", "check", "--catalogue", str(city)])
    assert out.exit_code == 1
    text = (city / "features.yaml").read_text()
    line = text[: text.index("hired_in: hired_month")].count("\n") + 1
    assert (
        f"{city / 'features.yaml'}:{line}:7: E131 source 'employment' has no column 'hired_month'\n"
        "  fix: did you mean 'from_month'"
    ) in out.output
    assert "Traceback" not in out.output


def test_an_unreadable_sources_yaml_is_named(tmp_path: Path) -> None:
    city = _catalogue(tmp_path / "city")
    (city / "sources.yaml").write_bytes("version: 1\n# 城市\n".encode("gbk"))
    out = _invoke(["sources", "--catalogue", str(city)])
    assert out.exit_code == 1
    assert f"{city / 'sources.yaml'}:2:3: E000 not UTF-8 text" in out.output
    assert "Traceback" not in out.output


COMMANDS = {
    "policy check": ["policy", "check"],
    "features": ["features"],
    "sources": ["sources"],
    "ingest": ["ingest", "--data", "{tmp}", "--as-of", AS_OF],
    "quarantine": ["quarantine", "--db", "sqlite:///{tmp}/x.db"],
    "simulate": ["simulate", "--data", "{tmp}", "--as-of", AS_OF],
    "run": ["run", "--data", "{tmp}", "--as-of", AS_OF, "--db", "sqlite:///{tmp}/x.db"],
    "explain": ["explain", "--policy", JOB, "--entity", "x", "--db", "sqlite:///{tmp}/x.db"],
    "report": ["report", "--run", "1", "--out", "{tmp}/r.html", "--db", "sqlite:///{tmp}/x.db"],
    "synth": ["synth", "--enterprises", "1", "--persons", "1", "--out", "{tmp}/city"],
}


@pytest.mark.parametrize("args", COMMANDS.values(), ids=list(COMMANDS))
def test_every_command_that_reads_a_catalogue_takes_the_option(
    tmp_path: Path, args: list[str]
) -> None:
    """Each reads the catalogue given, before anything else: a missing one is E020."""
    command = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = _invoke([*command, "--catalogue", str(tmp_path / "nowhere")])
    assert out.exit_code == 1, out.output
    assert f"{tmp_path / 'nowhere'}: E020 no catalogue folder here" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "x.db").exists()
    help_text = _invoke([*args[: 2 if args[0] == "policy" else 1], "--help"]).output
    assert "--catalogue DIR" in help_text
    assert "$DISBURSE_CATALOGUE" in help_text
