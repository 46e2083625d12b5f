"""Checkpoints on SQLite and PostgreSQL: the ledger's signed head, kept outside its tables,
catches what the chain alone cannot: a tail cut off, a chain rewritten whole with fresh
hashes, a forged transfer appended with a correct hash.  Each edit here is made as an
insider would, consistently (triggers dropped, hashes recomputed, even with the key), so
that `verify` without the checkpoint passes: the checkpoint is what fails it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Connection, Engine, select, text

from ledgers import audit, versions
from ledgers.chain import CHAIN_FIELDS, DIGEST_BYTES, GENESIS, with_hashes
from ledgers.checkpoints import (
    Checkpoint,
    KindTotal,
    checkpoint_path,
    ledger_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from ledgers.db import LedgerError
from ledgers.frames import read_frame
from ledgers.post import ENTITLEMENT_COLUMNS, post_entitlements
from ledgers.runs import start_run
from ledgers.scan import TRANSFER_SCHEMA
from ledgers.schema import Transfer
from ledgers.versions import transfer_columns
from tests import minicity
from tests.keys import KEY, OTHER_KEY

CC = minicity.credit_codes(4)
PID = minicity.person_ids(4)


def _run(engine: Engine, store: Path) -> int:
    with engine.begin() as conn:
        return start_run(conn, kind="nightly", as_of=dt.date(2026, 1, 1), store_dir=store)


def _post(engine: Engine, run: int, *rows: tuple[str, str, int]) -> None:
    frame = pl.DataFrame(
        [("p", "2026", e, p, a, "5" * 64, None) for e, p, a in rows],
        schema=ENTITLEMENT_COLUMNS,
        orient="row",
    )
    post_entitlements(engine, frame, run, key=KEY)


def _unguard(conn: Connection) -> None:
    """What an insider does first: the append-only triggers go."""
    if conn.dialect.name == "postgresql":
        for table in ("transfers", "entitlement_keys"):
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    else:
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        for (name,) in names.all():
            conn.execute(text(f"DROP TRIGGER {name}"))


def _read(conn: Connection) -> pl.DataFrame:
    """Every transfer as chained (the policy sha256 joined back from policy_versions)."""
    t = Transfer.__table__
    stmt = select(*transfer_columns(t, TRANSFER_SCHEMA)).order_by(t.c.transfer_id)
    return read_frame(conn, stmt, TRANSFER_SCHEMA)


def _as_stored(conn: Connection, chained: pl.DataFrame) -> list[dict[str, object]]:
    """Chained transfers as rows for `Transfer.__table__.insert()`: the policy's version by
    its number (the digests stay hex: the table's type stores them as bytes)."""
    numbered = chained.with_columns(versions.numbered(versions.known(conn)))
    return numbered.drop("policy_sha256", *DIGEST_BYTES).to_dicts()


def _rewrite(engine: Engine, change: pl.Expr | None = None, keep: int | None = None) -> None:
    """Rewrite the chain consistently: transfers changed by `change` and/or cut after
    `keep`, every hash (and digest: this insider even has the key) recomputed from genesis,
    the entitlement keys of removed transfers removed."""
    t = Transfer.__table__
    with engine.begin() as conn:
        _unguard(conn)
        frame = _read(conn)
        if keep is not None:
            frame = frame.filter(pl.col("transfer_id") <= keep)
            conn.execute(text("DELETE FROM entitlement_keys WHERE transfer_id > :k"), {"k": keep})
        if change is not None:
            frame = frame.with_columns(change)
        rewritten = with_hashes(frame.select(CHAIN_FIELDS), GENESIS, KEY)
        conn.execute(t.delete())
        if rewritten.height:
            conn.execute(t.insert(), _as_stored(conn, rewritten))


@pytest.fixture
def filed(engine: Engine, tmp_path: Path) -> tuple[Path, Checkpoint]:
    """Two runs, each with its checkpoint; the first run's checkpoint as finance filed it."""
    store = tmp_path / "store"
    run1 = _run(engine, store)
    _post(engine, run1, (CC[0], CC[0], 100), (PID[0], PID[1], 200), (CC[1], CC[1], 300))
    path = write_checkpoint(engine, run1, KEY)
    assert path == checkpoint_path(store, run1)
    copy = tmp_path / "filed-elsewhere.json"
    copy.write_bytes(path.read_bytes())
    run2 = _run(engine, store)
    _post(engine, run2, (CC[2], CC[2], 400))
    write_checkpoint(engine, run2, KEY)
    return copy, read_checkpoint(copy)


def _verify(engine: Engine, filed: Path, key: object = KEY) -> audit.VerifyResult:
    return audit.verify(engine, key=key, checkpoints=[(read_checkpoint(filed), str(filed))])  # type: ignore[arg-type]


def _checkpoint_check(result: audit.VerifyResult) -> audit.Check:
    return next(c for c in result.checks if c.name == "checkpoint")


def test_a_checkpoint_records_the_head_and_totals_signed(
    engine: Engine, filed: tuple[Path, Checkpoint]
) -> None:
    path, cp = filed
    assert (cp.run_id, cp.transfer_id, cp.transfers, cp.amount_fen) == (1, 3, 3, 600)
    assert cp.by_kind == {"grant": KindTotal(3, 600)}
    assert cp.key_id == KEY.key_id
    assert KEY.signed_by(cp.payload(), cp.signature)
    assert not OTHER_KEY.signed_by(cp.payload(), cp.signature)
    data = json.loads(path.read_text())
    assert data["format"] == "disburse-checkpoint-1"
    assert data["hash"] == audit.entries(engine, unmask=True).row(2, named=True)["hash"]
    # No personal data in it: a head, counts and amounts.
    assert not any(p in path.read_text() for p in PID)


def test_an_empty_ledger_is_checkpointed_at_genesis(engine: Engine, tmp_path: Path) -> None:
    cp = ledger_checkpoint(engine, _run(engine, tmp_path), KEY)
    assert (cp.transfer_id, cp.hash, cp.transfers, cp.by_kind) == (0, GENESIS, 0, {})
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(cp.to_json()))
    assert _verify(engine, path).ok


def test_the_ledger_extends_its_checkpoint(engine: Engine, filed: tuple[Path, Checkpoint]) -> None:
    result = _verify(engine, filed[0])
    assert result.ok, result.to_text()
    check = _checkpoint_check(result)
    assert "the ledger extends the checkpoint of run 1" in check.detail
    assert "1 transfers after it, by runs 2 to 2, are not anchored by it" in check.detail


def test_a_chain_rewritten_whole_with_fresh_hashes_fails_against_the_checkpoint(
    engine: Engine, filed: tuple[Path, Checkpoint]
) -> None:
    # A person's grant doubled, every hash after it recomputed: consistent in itself...
    doubled = (
        pl.when(pl.col("entity") == PID[0])
        .then(pl.col("amount_fen") * 2)
        .otherwise(pl.col("amount_fen"))
        .alias("amount_fen")
    )
    _rewrite(engine, doubled)
    assert audit.verify(engine, key=KEY).ok
    # ...but not with the head finance filed.
    result = _verify(engine, filed[0])
    assert result.failed
    bad = _checkpoint_check(result)
    assert not bad.ok
    assert bad.entry == "transfer 3"
    assert "the chain up to it was rewritten" in str(bad.problem)


def test_a_tail_cut_off_fails_against_the_checkpoint(
    engine: Engine, filed: tuple[Path, Checkpoint]
) -> None:
    _rewrite(engine, keep=2)
    assert audit.verify(engine, key=KEY).ok
    bad = _checkpoint_check(_verify(engine, filed[0]))
    assert "the checkpoint's head is missing: the ledger ends at transfer 2" in str(bad.problem)


def test_a_forged_transfer_appended_with_a_correct_hash_fails_against_the_checkpoint(
    engine: Engine, filed: tuple[Path, Checkpoint]
) -> None:
    """A payout slipped in after the head with a correct hash passes --head; the checkpoint
    knows the run it names had ended."""
    head = audit.verify(engine, key=KEY).head_hash
    _rewrite(engine, keep=3)  # as it was after run 1 (run 2's transfer removed)...
    t = Transfer.__table__
    with engine.begin() as conn:
        last = _read(conn)
        forged = last.tail(1).with_columns(
            transfer_id=pl.lit(4, pl.Int64),
            entity=pl.lit(PID[2]),
            payee=pl.lit(PID[2]),
            credit_account=pl.lit(f"payable:{PID[2]}"),
            amount_fen=pl.lit(99_999, pl.Int64),
        )
        # ...then a forged grant to run 1, chained with a correct hash (and digest).
        row = with_hashes(forged.select(CHAIN_FIELDS), str(last["hash"][-1]), KEY)
        conn.execute(t.insert(), _as_stored(conn, row))
        conn.execute(
            text("INSERT INTO entitlement_keys VALUES ('p', '2026', :e, 4, 1)"), {"e": PID[2]}
        )
    plain = audit.verify(engine, key=KEY, expect_head=filed[1].hash)
    assert plain.ok, plain.to_text()  # the recorded head is still in the chain
    assert not audit.verify(engine, key=KEY, expect_head=head).ok
    result = _verify(engine, filed[0])
    bad = _checkpoint_check(result)
    assert bad.entry == "transfer 4"
    assert "names run 1, which had ended" in str(bad.problem)
    assert PID[2] not in result.to_text()


def test_a_checkpoint_changed_or_signed_by_another_key_is_refused(
    engine: Engine, filed: tuple[Path, Checkpoint], tmp_path: Path
) -> None:
    path, cp = filed
    data = json.loads(path.read_text())
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**data, "amount_fen": data["amount_fen"] + 1}))
    bad = _checkpoint_check(_verify(engine, changed))
    assert "its signature does not match its content" in str(bad.problem)
    other = tmp_path / "other.json"
    forged = dataclasses.replace(cp, key_id=OTHER_KEY.key_id)
    other.write_text(
        json.dumps({**forged.to_json(), "signature": OTHER_KEY.sign(forged.payload())})
    )
    bad = _checkpoint_check(_verify(engine, other))
    assert f"it names key {OTHER_KEY.key_id}" in str(bad.problem)
    # Without the key the rest is checked, the signature is not: incomplete, not ok.
    result = _verify(engine, path, key=None)
    check = _checkpoint_check(result)
    assert (check.unchecked, result.status) == (True, "incomplete")
    assert "the ledger extends the checkpoint" in check.detail
    for content, message in [
        ("{", "cannot read the checkpoint file"),
        ('{"format": "x"}', "is not a disburse checkpoint"),
        (json.dumps({**data, "transfer_id": "3"}), "incomplete or malformed"),
    ]:
        broken = tmp_path / "broken.json"
        broken.write_text(content)
        with pytest.raises(LedgerError, match=message):
            read_checkpoint(broken)
    with pytest.raises(LedgerError, match="does not exist"):
        read_checkpoint(tmp_path / "none.json")


def test_a_checkpoint_that_cannot_be_written_is_a_clean_error(
    engine: Engine, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = _run(engine, blocker)
    with pytest.raises(LedgerError, match="cannot write the checkpoint"):
        write_checkpoint(engine, run, KEY)
    with engine.begin() as conn:
        bare = start_run(conn, kind="post", as_of=dt.date(2026, 1, 1))
    with pytest.raises(LedgerError, match="records no store folder"):
        write_checkpoint(engine, bare, KEY)
