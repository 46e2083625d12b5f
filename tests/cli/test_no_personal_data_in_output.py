"""Every command's output, walked for personal data: on a city whose every resident identity
number and bank account is known (read from its own source files), no command prints one
whole unless --unmask is given.  What the outside testers do with grep, done for every
command: ingest, quarantine, run, simulate, explain (a child paid to a guardian), report,
ledger summary / entries / balances / counted, audit verify (passing and failing), publish (the
notice's files too), pay export / simulate-reply / import, objection add / list / decide, runs,
policy check, features, sources, db init.  `bench` is left out: it is slow and prints timings only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from disburse.cli import main
from jobs.catalogue import load_source_catalogue
from ledgers.db import open_engine

AS_OF = "2026-03-15"
RESIDENT_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
# Runs of characters an identity number or account number is made of; a whole one is a
# substring of such a run (a masked one is broken by its asterisks).
RUN = re.compile(r"[0-9A-Z]{12,}")


@dataclass
class Secrets:
    """The city's identity numbers and bank account numbers, by the lengths they come in."""

    values: set[str] = field(default_factory=set)

    @property
    def lengths(self) -> set[int]:
        return {len(v) for v in self.values}

    def found_in(self, text: str) -> list[str]:
        """Every secret that appears whole in `text`."""
        lengths = sorted(self.lengths)
        hits = set()
        for m in RUN.finditer(text):
            run = m.group(0)
            for n in lengths:
                for i in range(len(run) - n + 1):
                    if run[i : i + n] in self.values:
                        hits.add(run[i : i + n])
        return sorted(hits)


def city_secrets(city: Path) -> Secrets:
    """Every resident identity number and bank account in the city's source files.

    The catalogue says which columns hold them (`pii: id | account`); an id column that
    also holds credit codes (a credit list's subject) contributes its resident numbers
    only, recognised by their shape (17 digits and a check character, right or wrong)."""
    catalogue = load_source_catalogue()
    credit_codes = set(pl.read_parquet(city / "enterprises.parquet")["credit_code"].drop_nulls())
    out = Secrets()
    for name, source in catalogue.sources.items():
        columns = [c for c, col in source.columns.items() if col.pii in ("id", "account")]
        if not columns:
            continue
        frame = pl.read_parquet(city / f"{name}.parquet", columns=columns)
        for c in columns:
            values = {str(v) for v in frame[c].drop_nulls().to_list()}
            if source.columns[c].pii == "id":
                values = {v for v in values if RESIDENT_SHAPE.match(v) and v not in credit_codes}
            else:
                values = {v for v in values if len(v) >= 12}
            out.values |= values
    return out


def _label(args: tuple[str, ...]) -> str:
    """The command as typed, its paths and identifiers left out."""
    out: list[str] = []
    for prev, arg in zip(("", *args), args, strict=False):
        if prev in ("--db", "--store", "--data", "--out", "--entity", "--checkpoint"):
            out.append("...")
        else:
            out.append(arg)
    return " ".join(out)


class Walk:
    """Runs commands and keeps every output (stdout, stderr and files they wrote)."""

    def __init__(self, tmp: Path, city: Path) -> None:
        self.tmp = tmp
        self.city = city
        self.db = f"sqlite:///{tmp / 'ledger.db'}"
        self.store = tmp / "store"
        self.outputs: dict[str, str] = {}

    def __call__(self, *args: str, ok: bool = True, name: str | None = None) -> str:
        result = CliRunner().invoke(main, list(args))
        label = name or _label(args)
        assert "Traceback" not in result.output, (label, result.output)
        if ok:
            assert result.exit_code == 0, (label, result.output)
        self.outputs[label] = result.output + (result.stderr if result.stderr_bytes else "")
        return result.stdout

    def file(self, label: str, path: Path) -> None:
        self.outputs[label] = path.read_text(encoding="utf-8")


def _tamper(db: str, entity: str) -> Iterator[str]:
    """Edits behind the engine's back, each on a person's entitlement, one at a time:
    yields after each so that verify fails there, then puts things back."""
    with open_engine(db) as engine:
        with engine.begin() as conn:
            for table in ("transfers", "entitlement_keys"):
                for verb in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))
            tid, amount = conn.execute(
                text("SELECT transfer_id, amount_fen FROM transfers WHERE entity = :e LIMIT 1"),
                {"e": entity},
            ).one()
            key = conn.execute(
                text("SELECT * FROM entitlement_keys WHERE entity = :e LIMIT 1"), {"e": entity}
            ).one()
        # The chain: a person's amount changed.
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE transfers SET amount_fen = amount_fen + 1 WHERE transfer_id = :t"),
                {"t": tid},
            )
        yield "amount"
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE transfers SET amount_fen = :a WHERE transfer_id = :t"),
                {"a": amount, "t": tid},
            )
        # The balances: a person's grant turned round, so the payable goes below zero.
        swap = (
            "UPDATE transfers SET debit_account = credit_account, credit_account = debit_account "
            "WHERE transfer_id = :t"
        )
        with engine.begin() as conn:
            conn.execute(text(swap), {"t": tid})
        yield "swap"
        with engine.begin() as conn:
            conn.execute(text(swap), {"t": tid})
        # The keys: a person's entitlement key removed.
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM entitlement_keys WHERE entity = :e AND policy_id = :p"),
                {"e": entity, "p": key.policy_id},
            )
        yield "key"
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO entitlement_keys VALUES (:policy_id, :benefit_period, :entity, "
                    ":transfer_id, :run_id)"
                ),
                dict(key._mapping),
            )


@pytest.fixture(scope="module")
def walked(city: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Walk, Secrets]:
    """Every command run once over the city (the slow part, shared by the checks below)."""
    tmp = tmp_path_factory.mktemp("walk")
    run = Walk(tmp, city)
    db, store = ["--db", run.db], ["--store", str(run.store)]
    data = ["--data", str(city), "--as-of", AS_OF]

    run("db", "init", *db)
    run("db", "init", *db, "--json")
    run("ingest", *data, *db, *store)
    run("ingest", *data, *db, *store, "--json")
    run("quarantine", *db, "--limit", "100000")
    run("quarantine", *db, "--limit", "100000", "--json")
    run("quarantine", *db, "--limit", "100000", "--source", "relations", "--rule", "duplicate_key")
    out = json.loads(run("run", *data, *db, *store, "--json"))
    run_id = out["run_id"]
    checkpoint = ["--checkpoint", out["checkpoint"]["file"]]
    run.file("checkpoint.json", Path(out["checkpoint"]["file"]))
    run("run", *data, *db, *store)
    run("simulate", *data)
    run("simulate", *data, "--json")
    run("simulate", *data, "--policy", "childcare-subsidy", "--json")

    # A child paid to a guardian, and an enterprise, as the auditor would ask about them.
    lines = run("ledger", "entries", *db, "--limit", "0", "--json", "--unmask", name="unmasked")
    del run.outputs["unmasked"]  # asked for in full: not part of the walk
    entries = [json.loads(line) for line in lines.splitlines()]
    child = next(e for e in entries if e["policy"] == "childcare-subsidy")
    assert child["entity"] != child["payee"]
    firm = next(e for e in entries if e["policy"] == "job-stabilisation-refund")
    for who in (child, firm):
        pol = who["policy"]
        run("explain", *db, "--policy", pol, "--entity", who["entity"])
        run("explain", *db, "--policy", pol, "--entity", who["entity"], "--json")
    run("explain", *db, "--policy", "elderly-allowance", "--entity", child["payee"], "--json")
    # A past year paid as back-pay, explained as of its last day.
    late = next(e for e in entries if e["policy"] == "childcare-subsidy" and e["period"] == "2025")
    for fmt in ([], ["--json"]):
        run("explain", *db, "--policy", late["policy"], "--entity", late["entity"],
            "--period", "2025", *fmt)  # fmt: skip

    html = tmp / "report.html"
    run("report", *db, "--run", str(run_id), "--out", str(html), "--json")
    run.file("report.html", html)

    run("ledger", "summary", *db)
    run("ledger", "summary", *db, "--json")
    for fmt in ([], ["--json"], ["--csv"]):
        run("ledger", "entries", *db, "--limit", "0", *fmt)
    run("ledger", "entries", *db, "--entity", child["entity"], "--json")
    run("ledger", "balances", *db)
    run("ledger", "balances", *db, "--json")
    run("ledger", "counted", *db)
    run("ledger", "counted", *db, "--json")
    run("audit", "verify", *db, *store)
    run("audit", "verify", *db, *store, "--json", *checkpoint)
    nokey = ["--store", str(tmp / "elsewhere")]
    run("audit", "verify", *db, *nokey, ok=False, name="audit verify without the key")
    for case in _tamper(run.db, child["entity"]):
        for fmt in ([], ["--json"]):
            label = f"audit verify {' '.join(fmt)} after {case}"
            run("audit", "verify", *db, *store, *fmt, *checkpoint, ok=False, name=label)
            run("audit", "verify", *db, *nokey, *fmt, ok=False, name=f"{label}, without the key")
    # The finance day: the notice, the payment file's summary, the bank's reply, objections.
    # (The payment file itself is for the bank: it carries names and accounts by design.)
    notice = tmp / "notice.html"
    run("publish", *db, "--run", str(run_id), "--out", str(notice), "--on", "2026-03-16")
    run.file("notice.html", notice)
    run.file("notice.csv", notice.with_suffix(".csv"))
    pay = ["--as-of", "2026-03-16", "--out", str(tmp / "pay.xml")]
    run("pay", "export", *db, *store, *pay)
    run("pay", "export", *db, *store, *pay, "--json")
    run(
        "pay",
        "simulate-reply",
        *db,
        *store,
        "--out",
        str(tmp / "reply.xml"),
        "--return-rate",
        "0.2",
    )
    run("pay", "import", *db, *store, str(tmp / "reply.xml"))
    run("pay", "import", *db, *store, str(tmp / "reply.xml"), "--json")
    reason = ["--reason", "the family moved away in 2025"]
    run(
        "objection",
        "add",
        *db,
        "--policy",
        "childcare-subsidy",
        "--entity",
        child["entity"],
        *reason,
    )
    run("objection", "list", *db)
    run("objection", "list", *db, "--json")
    run("objection", "decide", *db, *store, "--id", "1", "--uphold", "--note", "confirmed")
    run("explain", *db, "--policy", "childcare-subsidy", "--entity", child["entity"])
    # Money paid back: by the guardian (who owes it if the upheld objection came after
    # the bank paid), and refused for someone who owes nothing; both name them masked.
    for who, fmt in ((child["payee"], []), (child["payee"], ["--json"]), (child["entity"], [])):
        back = ["--amount", "1", "--reference", f"W-{len(fmt)}", "--on", "2026-03-20"]
        run("pay", "recover", *db, *store, "--entity", who, *back, *fmt, ok=False,
            name=f"pay recover {' '.join(fmt)} {'payee' if who == child['payee'] else 'child'}")  # fmt: skip
    run("runs", *db)
    run("runs", *db, "--json")
    run("policy", "check")
    run("policy", "check", "--verbose")
    run("features")
    run("features", "--json")
    run("sources")
    run("sources", "--markdown")
    return run, city_secrets(city)


def test_the_city_has_the_personal_data_the_walk_looks_for(walked: tuple[Walk, Secrets]) -> None:
    run, secrets = walked
    assert len(secrets.values) > 3000  # identity numbers of 3,000 residents, and accounts
    # The search itself finds them where they are printed on purpose.
    lines = CliRunner().invoke(
        main, ["ledger", "entries", "--db", run.db, "--limit", "0", "--unmask"]
    )
    assert secrets.found_in(lines.output)


def test_no_command_prints_an_identity_number_or_account_whole(
    walked: tuple[Walk, Secrets],
) -> None:
    run, secrets = walked
    leaks = {
        label: f"{len(found)} whole, e.g. {found[0]}"
        for label, out in run.outputs.items()
        if (found := secrets.found_in(out))
    }
    assert leaks == {}, "\n".join(f"{k}: {v}" for k, v in leaks.items())
