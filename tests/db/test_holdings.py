"""Holdings snapshots: when a post keeps one, when a read may use it, and when it falls back."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
from sqlalchemy import Engine, select, text

from ledgers import audit
from ledgers.holdings import HOLDING_KEY, Holdings, holdings
from ledgers.post import post_entitlements, post_transfers
from ledgers.schema import HoldingsSnapshot
from tests.db.test_ledger import ents, new_run
from tests.keys import KEY

POLICIES = ["p-a", "p-b"]
RESIDENT = "33010220230102025X"  # a valid resident identity number (a check character X)


def post(engine: Engine, run: int, folder: Path, *rows: tuple[str, str, str, str, int]) -> None:
    known = holdings(engine, POLICIES, folder)
    post_entitlements(engine, ents(*rows), run, known=known, keep=folder, key=KEY)


def same(a: Holdings, b: Holdings) -> bool:
    order = list(HOLDING_KEY)
    return a.head == b.head and a.frame.sort(order).equals(b.frame.sort(order))


def recorded(engine: Engine) -> list[tuple[int, str]]:
    s = HoldingsSnapshot.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(s.c.head_id, s.c.file).order_by(s.c.head_id)).all()
    return [(int(r.head_id), str(r.file)) for r in rows]


def test_a_post_keeps_a_snapshot_and_the_next_read_starts_from_it(
    engine: Engine, tmp_path: Path
) -> None:
    run, folder = new_run(engine), tmp_path / "holdings"
    post(engine, run, folder, ("p-a", "2026", "E1", "E1", 100), ("p-b", "2026", "E2", "G2", 50))
    assert [head for head, _ in recorded(engine)] == [2]
    kept = holdings(engine, POLICIES, folder)
    assert kept.from_snapshot == 2
    assert same(kept, holdings(engine, POLICIES))

    # Transfers posted without a snapshot (a payment, an adjustment read from the
    # ledger) are read after the snapshot's head and added to it.
    post_transfers(
        engine,
        pl.DataFrame(
            {
                "kind": ["settled"],
                "debit_account": ["payable:E1"],
                "credit_account": ["clearing:bank"],
                "amount_fen": [30],
            }
        ),
        run,
        key=KEY,
    )
    post_entitlements(engine, ents(("p-a", "2026", "E1", "E1", 70)), run, key=KEY)
    kept = holdings(engine, POLICIES, folder)
    assert kept.from_snapshot == 2
    assert same(kept, holdings(engine, POLICIES))
    assert kept.nonzero().filter(pl.col("entity") == "E1")["net_fen"].to_list() == [70]


def test_only_the_newest_two_snapshots_are_kept(engine: Engine, tmp_path: Path) -> None:
    run, folder = new_run(engine), tmp_path / "holdings"
    for amount in (100, 120, 90, 95):
        post(engine, run, folder, ("p-a", "2026", "E1", "E1", amount))
    kept = recorded(engine)
    assert [head for head, _ in kept] == [3, 4]
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(f).name for _, f in kept)
    # Nothing posted: the head keeps its snapshot, no new one is written.
    post(engine, run, folder, ("p-a", "2026", "E1", "E1", 95))
    assert [head for head, _ in recorded(engine)] == [3, 4]


def test_a_snapshot_is_not_used_when_it_cannot_be_trusted(engine: Engine, tmp_path: Path) -> None:
    run, folder = new_run(engine), tmp_path / "holdings"
    post(engine, run, folder, ("p-a", "2026", "E1", "E1", 100))
    scanned = holdings(engine, POLICIES)

    # A policy the snapshot does not cover: the ledger is read.
    wider = holdings(engine, [*POLICIES, "p-c"], folder)
    assert wider.from_snapshot is None

    # An edited file (its sha256 no longer the recorded one): the ledger is read.
    ((_, file),) = recorded(engine)
    original = Path(file).read_bytes()
    pl.DataFrame(
        {
            "policy_id": ["p-a"],
            "benefit_period": ["2026"],
            "entity": ["E1"],
            "payee": ["E1"],
            "net_fen": [1],
        }
    ).write_parquet(file)
    fallback = holdings(engine, POLICIES, folder)
    assert fallback.from_snapshot is None
    assert same(fallback, scanned)

    # A missing file: the same.
    Path(file).unlink()
    assert holdings(engine, POLICIES, folder).from_snapshot is None

    # A head that is no longer in the chain (another ledger under the same store, say).
    Path(file).write_bytes(original)
    assert holdings(engine, POLICIES, folder).from_snapshot == 1
    with engine.begin() as conn:
        conn.execute(text("UPDATE holdings_snapshots SET head_hash = :h"), {"h": "0" * 64})
    assert holdings(engine, POLICIES, folder).from_snapshot is None


def test_no_snapshot_when_the_post_read_the_ledger_itself(engine: Engine, tmp_path: Path) -> None:
    run, folder = new_run(engine), tmp_path / "holdings"
    stale = holdings(engine, POLICIES, folder)
    post_entitlements(engine, ents(("p-a", "2026", "E1", "E1", 100)), run, key=KEY)
    # `stale` was read before that post: the chain head moved, so the post reads the ledger
    # and keeps nothing (it could not say what the holdings are from what it read).
    post_entitlements(
        engine, ents(("p-a", "2026", "E2", "E2", 5)), run, known=stale, keep=folder, key=KEY
    )
    assert recorded(engine) == []
    assert not folder.exists() or not any(folder.iterdir())


def test_verify_checks_the_newest_snapshot_against_the_ledger(
    engine: Engine, tmp_path: Path
) -> None:
    run, folder = new_run(engine), tmp_path / "holdings"
    post(
        engine,
        run,
        folder,
        ("p-a", "2026", "E1", "E1", 100),
        ("p-a", "2026", RESIDENT, RESIDENT, 40),
    )
    post(engine, run, folder, ("p-a", "2026", "E1", "E1", 60))
    result = audit.verify(engine, key=KEY)
    assert result.ok, result.to_text()
    check = next(c for c in result.checks if c.name == "holdings")
    assert check.detail == (
        "holdings snapshot at transfer 3 equals the ledger's holdings there (2 keys and payees)"
    )

    # A snapshot rewritten together with its recorded sha256 would still be used by runs:
    # verify compares it with the ledger and names the first key that differs.
    _, (_, newest) = recorded(engine)
    frame = pl.read_parquet(newest).with_columns(
        pl.when(pl.col("entity") == RESIDENT).then(45).otherwise(pl.col("net_fen")).alias("net_fen")
    )
    frame.write_parquet(newest)
    digest = hashlib.sha256(Path(newest).read_bytes()).hexdigest()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE holdings_snapshots SET sha256 = :d WHERE head_id = 3"), {"d": digest}
        )
    result = audit.verify(engine, key=KEY)
    assert not result.ok
    bad = result.first_problem
    assert bad is not None
    # A resident identity number is masked in what verify prints.
    masked = "330102**********5X"
    assert (bad.name, bad.entry) == ("holdings", f"key p-a/2026/{masked} payee {masked}")
    assert bad.problem is not None
    assert bad.problem.startswith("the snapshot holds 45 fen, the ledger 40 fen")

    # A file that no longer matches its record is not used by runs: not a failure.
    Path(newest).write_bytes(b"not parquet")
    result = audit.verify(engine, key=KEY)
    assert result.ok, result.to_text()
    assert "runs ignore it" in next(c for c in result.checks if c.name == "holdings").detail
