"""The ledger commands on SQLite and PostgreSQL: db init, ledger summary|entries|balances, audit verify."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from disburse import cli_ledger
from disburse.cli import main
from ledgers.db import Roles, open_engine
from ledgers.post import ENTITLEMENT_COLUMNS, post_entitlements
from ledgers.runs import start_run
from tests import minicity
from tests.db.test_ledger import HEAD_REVISION
from tests.keys import KEY

cli_ledger.register(main)  # idempotent; disburse/cli.py does the same

CC = minicity.credit_codes(2)
PID = minicity.person_ids(2)
SUMMARY = """\
policy             period   count  amount_fen      yuan  adjustments  reversed
child-allowance    2026-Q1      1       60000    600.00            0         0
job-stabilisation  2026         1      900000  9,000.00            1         1
total                           2      960000  9,600.00            1         1

money by state (yuan):
policy_id          benefit_period  entitled   payable  returned  clearing  paid  offset  waived  clawed back  recovered  owed back
child-allowance    2026-Q1           600.00    600.00      0.00      0.00  0.00    0.00    0.00         0.00       0.00       0.00
job-stabilisation  2026            9,000.00  9,000.00      0.00      0.00  0.00    0.00    0.00         0.00       0.00       0.00
total                              9,600.00  9,600.00      0.00      0.00  0.00    0.00    0.00         0.00       0.00       0.00
"""


def masked(resident_id: str) -> str:
    """A resident identity number as printed without --unmask: the first 6 and last 2 kept."""
    return resident_id[:6] + "*" * 10 + resident_id[-2:]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def _ledger(url: str) -> None:
    """A small ledger: two enterprises (one reversed later) and a child paid to a guardian."""
    with open_engine(url, init=True) as engine:
        with engine.begin() as conn:
            for _ in range(2):
                start_run(conn, kind="post", as_of=dt.date(2026, 1, 1), state="posted")
        schema = ENTITLEMENT_COLUMNS
        decision = '{"features":{"unemployment_premium_paid":1000000},"conditions":[true,true]}'
        first = [
            ("job-stabilisation", "2026", CC[0], CC[0], 900000, "a" * 64, decision),
            ("job-stabilisation", "2026", CC[1], CC[1], 300000, "a" * 64, decision),
            ("child-allowance", "2026-Q1", PID[0], PID[1], 60000, "b" * 64, '{"age":3}'),
        ]
        post_entitlements(engine, pl.DataFrame(first, schema=schema, orient="row"), 1, key=KEY)
        second = [("job-stabilisation", "2026", CC[1], CC[1], 0, "a" * 64, decision)]
        post_entitlements(engine, pl.DataFrame(second, schema=schema, orient="row"), 2, key=KEY)


@pytest.mark.parametrize(
    "path",
    [
        ("db", "init"),
        ("ledger", "summary"),
        ("ledger", "entries"),
        ("ledger", "balances"),
        ("audit", "verify"),
    ],
    ids=" ".join,
)
def test_every_ledger_command_has_help(path: tuple[str, ...]) -> None:
    code, output = invoke(*path, "--help")
    assert code == 0
    assert len(output.split("\n\n")[1].strip()) > 20
    assert isinstance(main.commands[path[0]], click.Group)


def test_db_init_and_an_empty_ledger(db_url: str) -> None:
    # Roles are per cluster: this test's own names, dropped afterwards.
    prefix = f"t{uuid.uuid4().hex[:12]}"
    try:
        code, output = invoke("db", "init", "--db", db_url, "--role-prefix", prefix)
        assert code == 0, output
        assert f"schema at revision {HEAD_REVISION}" in output
        if db_url.startswith("postgresql"):
            assert f"owner role {prefix}_owner owns the tables" in output
            assert f"batch role {prefix}_batch may insert into and read the ledger" in output
            assert f"auditor role {prefix}_auditor may read: audit_transfers" in output
            assert f"unmasked reader role {prefix}_auditor_unmasked may also read" in output
        else:
            assert "read-only views for auditors: audit_transfers" in output
        code, output = invoke("db", "init", "--db", db_url, "--json", "--role-prefix", prefix)
        assert code == 0
        report = json.loads(output)
        assert report["revision"] == HEAD_REVISION
        assert "audit_transfers_unmasked" in report["unmasked_views"]
        code, output = invoke("audit", "verify", "--db", db_url)
        assert code == 0
        assert output.startswith("ok: 0 transfers")
        code, output = invoke("ledger", "summary", "--db", db_url)
        assert output.splitlines()[-1].split() == ["total", "0", "0", "0.00", "0", "0"]
    finally:
        if db_url.startswith("postgresql"):
            with open_engine(db_url) as engine, engine.begin() as conn:
                for role in reversed(Roles.named(prefix).all()):
                    if conn.execute(
                        text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
                    ).first():
                        conn.execute(text(f"REASSIGN OWNED BY {role} TO CURRENT_USER"))
                        conn.execute(text(f"DROP OWNED BY {role}"))
                        conn.execute(text(f"DROP ROLE {role}"))


def test_summary_entries_and_balances(db_url: str) -> None:
    """One small ledger per backend, read by every command."""
    _ledger(db_url)
    _summary_is_the_same_bytes_on_every_backend(db_url)
    _entries_as_json_and_csv_mask_personal_ids(db_url)
    _balances(db_url)


def _summary_is_the_same_bytes_on_every_backend(db_url: str) -> None:
    code, first = invoke("ledger", "summary", "--db", db_url)
    assert code == 0
    assert first == SUMMARY
    assert invoke("ledger", "summary", "--db", db_url)[1] == first
    code, out = invoke("ledger", "summary", "--db", db_url, "--json")
    data = json.loads(out)
    assert data["total"] == {"adjustments": 1, "amount_fen": 960000, "count": 2, "reversed": 1}
    assert [p["policy_id"] for p in data["policies"]] == ["child-allowance", "job-stabilisation"]


def _entries_as_json_and_csv_mask_personal_ids(db_url: str) -> None:
    code, out = invoke("ledger", "entries", "--db", db_url, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["kind"], r["run"], r["policy"], r["amount_fen"]) for r in rows] == [
        ("grant", 1, "child-allowance", 60000),
        ("grant", 1, "job-stabilisation", 900000 if CC[0] < CC[1] else 300000),
        ("grant", 1, "job-stabilisation", 300000 if CC[0] < CC[1] else 900000),
        ("reversal", 2, "job-stabilisation", 300000),
    ]
    child = rows[0]
    # The child and the guardian paid for it are printed masked, and only masked.
    assert child["entity"] == masked(PID[0])
    assert (child["payee"], child["credit"]) == (masked(PID[1]), f"payable:{masked(PID[1])}")
    assert child["decision"] == {"age": 3}
    assert PID[0] not in out
    assert PID[1] not in out
    assert {r["entity"] for r in rows[1:]} == set(CC)  # credit codes are not personal data
    code, out = invoke("ledger", "entries", "--db", db_url)
    assert code == 0
    child_line = out.splitlines()[1].split()
    assert child_line[5:8] == [
        masked(PID[0]),
        "budget:child-allowance:2026-Q1",
        f"payable:{masked(PID[1])}",
    ]
    assert PID[0] not in out
    assert PID[1] not in out
    code, out = invoke(
        "ledger", "entries", "--db", db_url, "--json", "--unmask", "--policy", "child-allowance"
    )
    assert (json.loads(out)["entity"], json.loads(out)["payee"]) == (PID[0], PID[1])
    code, out = invoke("ledger", "entries", "--db", db_url, "--csv", "--run", "2")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["kind"], r["entity"], r["amount_fen"]) for r in table] == [
        ("reversal", CC[1], "300000")
    ]
    code, out = invoke("ledger", "entries", "--db", db_url, "--entity", CC[0], "--limit", "1")
    assert len(out.splitlines()) == 2
    assert CC[0] in out
    code, out = invoke("ledger", "entries", "--db", db_url, "--json", "--csv")
    assert code == 2


def _balances(db_url: str) -> None:
    code, out = invoke("ledger", "balances", "--db", db_url)
    assert code == 0
    lines = out.splitlines()
    accounts_total = next(line for line in lines if line.startswith("total ("))
    assert accounts_total.split()[:6] == ["total", "(5", "accounts)", "1560000", "1560000", "0"]
    # Below, the same money split by policy and state, in yuan.
    per_policy = lines[lines.index("per policy (yuan):") + 1 :]
    assert [line.split()[:3] for line in per_policy] == [
        ["policy_id", "entitled", "payable"],
        ["child-allowance", "600.00", "600.00"],
        ["job-stabilisation", "9,000.00", "9,000.00"],
        ["total", "9,600.00", "9,600.00"],
    ]
    # The guardian's payable account is listed, its identity number masked.
    payable = [line.split() for line in out.splitlines() if line.startswith("payable:330106")]
    assert [row[:5] for row in payable] == [
        [f"payable:{masked(PID[1])}", "payable", "0", "60000", "60000"]
    ]
    assert PID[1] not in out
    code, out = invoke("ledger", "balances", "--db", db_url, "--unmask")
    assert f"payable:{PID[1]} " in out
    code, out = invoke("ledger", "balances", "--db", db_url, "--json", "--kind", "budget")
    data = json.loads(out)
    assert [(a["account"], a["balance_fen"]) for a in data["accounts"]] == [
        ("budget:child-allowance:2026-Q1", -60000),
        ("budget:job-stabilisation:2026", -900000),
    ]


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    """The tests' ledger key in a file, as an operator keeps it."""
    path = tmp_path / "ledger.key"
    path.write_text(KEY.secret.hex() + "\n")
    return str(path)


def test_verify_without_the_key_is_incomplete_not_ok(
    db_url: str, key_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The personal fields are checked only with the key; without it verify says what it
    could not check and exits 3, so no script takes it for a pass."""
    _ledger(db_url)
    monkeypatch.chdir(tmp_path)  # no ./disburse-store/ledger.key here
    monkeypatch.delenv("DISBURSE_LEDGER_KEY_FILE", raising=False)
    code, out = invoke("audit", "verify", "--db", db_url)
    assert code == 3, out
    assert out.startswith("INCOMPLETE: 4 transfers")
    assert "personal   NOT CHECKED 4 transfers commit to their accounts" in out
    assert "fix: give the ledger key" in out
    code, out = invoke("audit", "verify", "--db", db_url, "--json")
    assert (code, json.loads(out)["status"], json.loads(out)["ok"]) == (3, "incomplete", False)
    code, out = invoke("audit", "verify", "--db", db_url, "--key-file", key_file)
    assert code == 0, out
    assert "personal   ok" in out
    # The key is found where the run keeps it: $DISBURSE_LEDGER_KEY_FILE, else <store>/ledger.key.
    monkeypatch.setenv("DISBURSE_LEDGER_KEY_FILE", key_file)
    assert invoke("audit", "verify", "--db", db_url)[0] == 0
    monkeypatch.delenv("DISBURSE_LEDGER_KEY_FILE")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "ledger.key").write_text(Path(key_file).read_text())
    assert invoke("audit", "verify", "--db", db_url, "--store", str(tmp_path / "store"))[0] == 0
    (tmp_path / "bad.key").write_text("not a key\n")
    code, out = invoke("audit", "verify", "--db", db_url, "--key-file", str(tmp_path / "bad.key"))
    assert code == 1
    assert "does not hold a key (64 hexadecimal characters)" in out
    code, out = invoke("audit", "verify", "--db", db_url, "--key-file", str(tmp_path / "none.key"))
    assert code == 1
    assert "does not exist" in out


def test_verify_names_the_first_bad_entry(db_url: str, key_file: str) -> None:
    _ledger(db_url)
    code, out = invoke("audit", "verify", "--db", db_url, "--key-file", key_file)
    assert code == 0, out
    head = out.split("hash ")[1].split()[0]
    with open_engine(db_url) as engine, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE transfers DISABLE TRIGGER transfers_append_only"))
        else:
            conn.execute(text("DROP TRIGGER transfers_no_update"))
        conn.execute(
            text("UPDATE transfers SET amount_fen = amount_fen * 10 WHERE transfer_id = 2")
        )
    code, out = invoke("audit", "verify", "--db", db_url, "--key-file", key_file)
    assert code == 1
    assert "first bad entry: transfer 2" in out
    assert "hash does not match its content" in out
    code, out = invoke("audit", "verify", "--db", db_url, "--json", "--head", head)
    assert code == 1
    assert json.loads(out)["checks"][0]["entry"].startswith("transfer 2")


def test_a_database_without_a_ledger_is_a_clean_error(tmp_path: pytest.TempPathFactory) -> None:
    code, out = invoke("ledger", "summary", "--db", f"sqlite:///{tmp_path}/empty.db")
    assert code == 1
    assert "has no ledger yet" in out
    assert "fix:" in out
    code, out = invoke("audit", "verify", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert code == 1
    assert "cannot open" in out
