"""The run's checkpoint as finance sees it: named in the run summary (text and JSON), written
beside the run's archive, and `audit verify --checkpoint` failing once a database
administrator (who has no ledger key) rewrites the chain with fresh hashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
from click.testing import CliRunner
from sqlalchemy import select, text

from disburse.cli import main
from ledgers import versions
from ledgers.chain import chain, stored_content_expr
from ledgers.db import open_engine
from ledgers.frames import read_frame
from ledgers.scan import TRANSFER_SCHEMA
from ledgers.schema import Transfer
from ledgers.versions import transfer_columns


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout


def rehash_with_amount_raised(db: str) -> None:
    """The administrator's edit: the first transfer's amount raised, the triggers dropped
    and every hash recomputed from the stored digests (no key needed for that)."""
    t = Transfer.__table__
    with open_engine(db) as engine, engine.begin() as conn:
        for table in ("transfers", "entitlement_keys"):
            for verb in ("update", "delete", "replace"):
                conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))
        stmt = select(*transfer_columns(t, TRANSFER_SCHEMA)).order_by(t.c.transfer_id)
        frame = read_frame(conn, stmt, TRANSFER_SCHEMA)
        frame = frame.with_columns(
            pl.when(pl.col("transfer_id") == 1)
            .then(pl.col("amount_fen") + 100_000)
            .otherwise(pl.col("amount_fen"))
            .alias("amount_fen")
        )
        hashes = chain(frame.select(stored_content_expr()).to_series().to_list(), "0" * 64)
        frame = frame.with_columns(
            hash=pl.Series(hashes), prev_hash=pl.Series(["0" * 64, *hashes[:-1]])
        )
        conn.execute(t.delete())
        stored = frame.with_columns(versions.numbered(versions.known(conn))).drop("policy_sha256")
        conn.execute(t.insert(), stored.to_dicts())


def test_the_run_names_its_checkpoint_and_verify_holds_the_ledger_to_it(
    city: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = tmp_path / "store"
    args = ["--data", str(city), "--as-of", "2026-03-15", "--db", db, "--store", str(store)]
    code, out = invoke("run", *args, "--json")
    assert code == 0, out
    summary = json.loads(out)
    cp = summary["checkpoint"]
    assert cp["file"] == str(store / "runs" / "1" / "checkpoint.json")
    assert cp["transfers"] == summary["totals"]["transfers"] == cp["transfer_id"]
    code, out = invoke("run", *args)  # nothing new: a second run, its own checkpoint
    assert code == 0, out
    assert f"checkpoint: {store / 'runs' / '2' / 'checkpoint.json'}" in out
    assert f"head transfer {cp['transfer_id']} hash {cp['hash']}" in out
    filed = tmp_path / "filed-by-finance.json"
    shutil.copy(cp["file"], filed)

    verify = ["audit", "verify", "--db", db, "--store", str(store)]
    code, out = invoke(*verify, "--checkpoint", str(filed))
    assert code == 0, out
    assert "checkpoint ok" in " ".join(out.split())

    rehash_with_amount_raised(db)
    code, out = invoke(*verify)
    assert code == 0, out  # consistent in itself: the chain alone cannot tell
    code, out = invoke(*verify, "--checkpoint", str(filed))
    assert code == 1, out
    assert "the ledger does not extend the checkpoint of run 1" in out
    assert "the chain up to it was rewritten" in out
    code, out = invoke(*verify, "--checkpoint", str(filed), "--json")
    assert code == 1
    check = next(c for c in json.loads(out)["checks"] if c["name"] == "checkpoint")
    assert (check["status"], check["entry"]) == ("failed", f"transfer {cp['transfer_id']}")
    result = CliRunner().invoke(main, [*verify, "--checkpoint", str(tmp_path / "missing.json")])
    assert result.exit_code == 1
    assert "the checkpoint file" in result.output
    assert "does not exist" in result.output
