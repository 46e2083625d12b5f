"""The payout ledger on SQLite and PostgreSQL: posting, idempotency, append-only, tamper evidence."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import threading
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Connection, Engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from ledgers import audit
from ledgers.chain import (
    CHAIN_FIELDS,
    GENESIS,
    KEYED_FIELDS,
    PERSONAL_FIELDS,
    STORED_FIELDS,
    canonical_content,
    chain,
    content_expr,
    keyed_content,
    keyed_content_expr,
    personal_content_expr,
    stored_content_expr,
    with_hashes,
)
from ledgers.db import LedgerError, init_schema, schema_revision
from ledgers.masking import mask_entity
from ledgers.post import ENTITLEMENT_COLUMNS, post_entitlements, post_transfers
from ledgers.runs import start_run
from ledgers.schema import AUDIT_VIEWS, UNMASKED_VIEWS, EntitlementKey, PolicyVersion, Transfer
from ledgers.versions import sha256_of
from tests import minicity
from tests.keys import KEY, OTHER_KEY

HEAD_REVISION = "0013"
SHA = "5" * 64
SCHEMA = ENTITLEMENT_COLUMNS
CC = minicity.credit_codes(3)
PID = minicity.person_ids(3)


def new_run(engine: Engine) -> int:
    with engine.begin() as conn:
        return start_run(conn, kind="post", as_of=dt.date(2026, 1, 1))


def ents(*rows: tuple[str, str, str, str, int]) -> pl.DataFrame:
    """Entitlements from (policy, period, entity, payee, amount_fen) tuples."""
    return pl.DataFrame(
        [(*r, SHA, f'{{"amount_fen":{r[4]}}}') for r in rows], schema=SCHEMA, orient="row"
    )


def transfers(engine: Engine) -> list[tuple[object, ...]]:
    t = Transfer.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                t.c.transfer_id, t.c.kind, t.c.debit_account, t.c.credit_account, t.c.amount_fen
            ).order_by(t.c.transfer_id)
        ).all()
    return [tuple(r) for r in rows]


def balance(engine: Engine, account: str) -> int:
    rows = audit.balances(engine, unmask=True).accounts.filter(pl.col("account") == account)
    return int(rows.get_column("balance_fen").sum())


def drop_triggers(conn: Connection) -> None:
    """What someone editing the ledger behind the engine's back does first."""
    if conn.dialect.name == "postgresql":
        for table in ("transfers", "entitlement_keys", "policy_versions"):
            conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
    else:
        for table in ("transfers", "entitlement_keys", "policy_versions"):
            for verb in ("update", "delete"):
                conn.execute(text(f"DROP TRIGGER {table}_no_{verb}"))


def insert_as_before_0013(engine: Engine, rows: list[tuple[Any, ...]], run: int) -> list[str]:
    """Transfers chained (version 2, under KEY) after the ledger's head and inserted as the
    engine stored them before migration 0013 (digests and the policy sha256 as hex text),
    with a grant's entitlement key; their hashes.  Each row: kind, debit, credit, amount,
    policy, period, entity, payee, policy sha256."""
    columns = [*CHAIN_FIELDS, "personal_mac", "prev_hash", "hash"]
    with engine.begin() as conn:
        head = conn.execute(
            text("SELECT transfer_id, hash FROM transfers ORDER BY transfer_id DESC LIMIT 1")
        ).first()
        last, prev = (0, GENESIS) if head is None else (int(head[0]), str(head[1]))
        frame = pl.DataFrame(
            [
                (last + 1 + i, r[0], r[1], r[2], r[3], run, *r[4:8], r[8], None)
                for i, r in enumerate(rows)
            ],
            schema={
                name: (pl.Int64 if name in ("transfer_id", "amount_fen", "run_id") else pl.String)
                for name in CHAIN_FIELDS
            },
            orient="row",
        )
        chained = with_hashes(frame, prev, KEY)
        for r in chained.iter_rows(named=True):
            conn.execute(
                text(
                    f"INSERT INTO transfers ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                {c: r[c] for c in columns},
            )
            if r["kind"] == "grant":
                conn.execute(
                    text("INSERT INTO entitlement_keys VALUES (:p, :b, :e, :t, :r)"),
                    {"p": r["policy_id"], "b": r["benefit_period"], "e": r["entity"],
                     "t": r["transfer_id"], "r": run},
                )  # fmt: skip
    return chained.get_column("hash").to_list()


# --- schema -------------------------------------------------------------------------


def test_migrations_match_the_models(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ledgers.schema import Base

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert schema_revision(engine) == HEAD_REVISION


def test_init_is_idempotent_and_adopts_a_pre_migration_database(db_url: str) -> None:
    from ledgers.db import open_engine

    with open_engine(db_url) as engine:
        # A database made by create_all before migrations: the run tables, no version row.
        init_schema(engine, "0001")
        new_run(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
        init_schema(engine)
        init_schema(engine)
        assert schema_revision(engine) == HEAD_REVISION
        post_entitlements(engine, ents(("p", "2026", CC[0], CC[0], 100)), 1, key=KEY)
        assert len(transfers(engine)) == 1
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
        with pytest.raises(LedgerError, match="no record of its migrations"):
            init_schema(engine)


def test_a_ledger_from_before_the_keyed_chain_keeps_verifying(db_url: str) -> None:
    """Transfers posted before migration 0006 keep verifying under chain version 1; new
    ones continue the chain under version 2; masked, the old ones print no hash."""
    from ledgers.db import open_engine

    with open_engine(db_url) as engine:
        init_schema(engine, "0005")
        run = new_run(engine)
        old = pl.DataFrame(
            [
                (1, "grant", "budget:p:2026", f"payable:{PID[0]}", 10, run, "p", "2026", PID[0]),
                (2, "grant", "budget:p:2026", f"payable:{CC[0]}", 20, run, "p", "2026", CC[0]),
            ],
            schema=list(audit.CHAIN_FIELDS[:9]),
            orient="row",
        ).with_columns(payee=pl.col("entity"), policy_sha256=pl.lit(SHA), decision=pl.lit(None))
        contents = old.select(*audit.CHAIN_FIELDS).select(content_expr()).to_series().to_list()
        hashes = chain(contents, GENESIS)
        old = old.with_columns(prev_hash=pl.Series([GENESIS, hashes[0]]), hash=pl.Series(hashes))
        with engine.begin() as conn:
            for r in old.iter_rows(named=True):
                cols = [*audit.CHAIN_FIELDS, "prev_hash", "hash"]
                conn.execute(
                    text(
                        f"INSERT INTO transfers ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
                    ),
                    {c: r[c] for c in cols},
                )
                conn.execute(
                    text("INSERT INTO entitlement_keys VALUES (:p, :b, :e, :t, :r)"),
                    {"p": "p", "b": "2026", "e": r["entity"], "t": r["transfer_id"], "r": run},
                )
        init_schema(engine)
        before = audit.verify(engine)
        assert before.ok, before.to_text()
        assert "posted before chain version 2" in before.to_text()
        post_entitlements(engine, ents(("p", "2026", PID[1], PID[1], 30)), new_run(engine), key=KEY)
        assert audit.verify(engine, key=KEY).ok
        assert audit.verify(engine).status == "incomplete"
        masked = audit.entries(engine, limit=None)
        assert masked.get_column("hash").is_null().to_list() == [True, True, False]
        assert audit.entries(engine, unmask=True).get_column("hash").to_list()[:2] == hashes


def test_views_exist_and_agree_with_the_library(engine: Engine) -> None:
    run = new_run(engine)
    post_entitlements(
        engine,
        ents(
            ("p", "2026", CC[0], CC[0], 100),
            ("p", "2026", CC[1], CC[1], 50),
            ("q", "once", PID[0], PID[1], 7),
        ),
        run,
        key=KEY,
    )
    post_entitlements(engine, ents(("p", "2026", CC[1], CC[1], 0)), new_run(engine), key=KEY)
    with engine.connect() as conn:
        for view in AUDIT_VIEWS:
            conn.execute(text(f"SELECT * FROM {view}")).all()
        summary = conn.execute(
            text(
                "SELECT policy_id, benefit_period, count, amount_fen, adjustments, reversed FROM audit_summary ORDER BY 1, 2"
            )
        ).all()
        bal = dict(conn.execute(text("SELECT account, balance_fen FROM audit_balances")).all())
        whole = dict(
            conn.execute(text("SELECT account, balance_fen FROM audit_balances_unmasked")).all()
        )
        shown = conn.execute(
            text(
                "SELECT entity, payee, credit_account, hash FROM audit_transfers WHERE policy_id = 'q'"
            )
        ).one()
        full = conn.execute(
            text("SELECT entity, payee, hash FROM audit_transfers_unmasked WHERE policy_id = 'q'")
        ).one()
        keys = dict(conn.execute(text("SELECT policy_id, entity FROM audit_entitlements")).all())
        for view in UNMASKED_VIEWS:
            conn.execute(text(f"SELECT * FROM {view}")).all()
    # The views mask resident identity numbers as the library does; the unmasked ones do not.
    assert tuple(shown) == (
        mask_entity(PID[0]),
        mask_entity(PID[1]),
        f"payable:{mask_entity(PID[1])}",
        full.hash,
    )
    assert tuple(full)[:2] == (PID[0], PID[1])
    assert keys["q"] == mask_entity(PID[0])
    lib = audit.summary(engine).rows
    assert [tuple(r) for r in summary] == [
        (
            r["policy_id"],
            r["benefit_period"],
            r["count"],
            r["amount_fen"],
            r["adjustments"],
            r["reversed"],
        )
        for r in lib.iter_rows(named=True)
    ]
    assert whole == dict(
        audit.balances(engine, unmask=True).accounts.select("account", "balance_fen").iter_rows()
    )
    assert bal == dict(audit.balances(engine).accounts.select("account", "balance_fen").iter_rows())
    assert f"payable:{PID[1]}" in whole


# --- posting ------------------------------------------------------------------------


def test_grant_then_repost_changes_nothing(engine: Engine) -> None:
    frame = ents(("p", "2026", CC[0], CC[0], 9000_00), ("p", "2026", PID[0], PID[0], 1))
    first = post_entitlements(engine, frame, new_run(engine), key=KEY)
    assert (first.granted, first.transfers, first.granted_fen) == (2, 2, 9000_01)
    before = transfers(engine)
    again = post_entitlements(engine, frame.reverse(), new_run(engine), chunk_size=1, key=KEY)
    assert (again.granted, again.adjusted, again.unchanged, again.transfers) == (0, 0, 2, 0)
    assert transfers(engine) == before
    assert again.head_hash == first.head_hash


def test_a_changed_amount_posts_the_difference(engine: Engine) -> None:
    post_entitlements(engine, ents(("p", "2026", CC[0], CC[0], 1000)), new_run(engine), key=KEY)
    up = post_entitlements(
        engine, ents(("p", "2026", CC[0], CC[0], 1500)), new_run(engine), key=KEY
    )
    down = post_entitlements(
        engine, ents(("p", "2026", CC[0], CC[0], 1200)), new_run(engine), key=KEY
    )
    gone = post_entitlements(engine, ents(("p", "2026", CC[0], CC[0], 0)), new_run(engine), key=KEY)
    assert (up.adjusted, up.increased_fen) == (1, 500)
    assert (down.adjusted, down.decreased_fen) == (1, 300)
    assert (gone.reversed, gone.decreased_fen) == (1, 1200)
    budget, payable = "budget:p:2026", f"payable:{CC[0]}"
    assert [r[1:] for r in transfers(engine)] == [
        ("grant", budget, payable, 1000),
        ("adjustment", budget, payable, 500),
        ("adjustment", payable, budget, 300),
        ("reversal", payable, budget, 1200),
    ]
    # Entitled again later: the key exists, so it is an adjustment, never a second grant.
    back = post_entitlements(
        engine, ents(("p", "2026", CC[0], CC[0], 10)), new_run(engine), key=KEY
    )
    assert (back.granted, back.adjusted) == (0, 1)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EntitlementKey)).scalar_one() == 1


def test_keys_not_posted_are_left_alone(engine: Engine) -> None:
    post_entitlements(
        engine,
        ents(("p", "2026", CC[0], CC[0], 10), ("q", "2026", CC[0], CC[0], 20)),
        new_run(engine),
        key=KEY,
    )
    result = post_entitlements(
        engine, ents(("q", "2026", CC[0], CC[0], 20)), new_run(engine), key=KEY
    )
    assert result.transfers == 0
    assert balance(engine, f"payable:{CC[0]}") == 30


def test_a_new_payee_reverses_the_old_one(engine: Engine) -> None:
    child, guardian, other = PID
    post_entitlements(
        engine, ents(("child", "2026", child, guardian, 500)), new_run(engine), key=KEY
    )
    result = post_entitlements(
        engine, ents(("child", "2026", child, other, 500)), new_run(engine), key=KEY
    )
    assert (result.adjusted, result.transfers) == (1, 2)
    assert balance(engine, f"payable:{guardian}") == 0
    assert balance(engine, f"payable:{other}") == 500


def paid(payee: str, amount_fen: int) -> pl.DataFrame:
    """A settled payment: the bank paid `amount_fen` of what is payable to `payee`."""
    return pl.DataFrame(
        {
            "kind": ["settled"],
            "debit_account": [f"payable:{payee}"],
            "credit_account": ["clearing:bank"],
            "amount_fen": [amount_fen],
        }
    )


def test_payments_and_clawbacks(engine: Engine) -> None:
    run = new_run(engine)
    post_entitlements(
        engine,
        ents(("p", "2026", CC[0], CC[0], 1000), ("q", "2026", CC[0], CC[0], 300)),
        run,
        key=KEY,
    )
    # A payment cannot exceed what is payable, and entitlements do not go through here.
    before = transfers(engine)
    with pytest.raises(LedgerError, match=rf"payable:{CC[0]} would end at -1 fen"):
        post_transfers(engine, paid(CC[0], 1301), run, key=KEY)
    assert transfers(engine) == before
    with pytest.raises(LedgerError, match="kind is not one of"):
        post_transfers(engine, paid(CC[0], 1).with_columns(kind=pl.lit("grant")), run, key=KEY)

    assert post_transfers(engine, paid(CC[0], 1200), run, key=KEY) == 1
    # 100 fen is still payable: it covers part of the decrease, the rest is owed back.
    result = post_entitlements(
        engine, ents(("p", "2026", CC[0], CC[0], 600)), new_run(engine), key=KEY
    )
    assert (result.decreased_fen, result.clawback_fen) == (100, 300)
    assert balance(engine, f"payable:{CC[0]}") == 0
    assert balance(engine, f"receivable:{CC[0]}") == -300

    # An increase to the same payee in the same post covers a decrease first.
    post_entitlements(engine, ents(("r", "2026", CC[1], CC[1], 1000)), run, key=KEY)
    post_transfers(engine, paid(CC[1], 1000), run, key=KEY)
    result = post_entitlements(
        engine,
        ents(("r", "2026", CC[1], CC[1], 0), ("s", "2026", CC[1], CC[1], 400)),
        new_run(engine),
        chunk_size=1,
        key=KEY,
    )
    assert (result.granted, result.reversed) == (1, 1)
    assert (result.decreased_fen, result.clawback_fen) == (400, 600)
    assert audit.verify(engine, key=KEY).ok


@pytest.mark.parametrize("pg_staging", [False, True], ids=["copy", "staged"])
def test_chunks_make_one_chain_the_same_on_every_backend(engine: Engine, pg_staging: bool) -> None:
    if pg_staging and engine.dialect.name != "postgresql":
        pytest.skip("staging is a PostgreSQL write path")
    frame = ents(*[("q", "2026-Q1", f"E{i:03d}", f"E{i:03d}", 100 + i) for i in range(7)])
    frame = frame.vstack(ents(("p", "2026-03", PID[0], PID[1], 1)))
    run = new_run(engine)
    result = post_entitlements(engine, frame, run, chunk_size=3, pg_staging=pg_staging, key=KEY)
    assert (result.chunks, result.transfers, result.first_transfer_id, result.last_transfer_id) == (
        3,
        8,
        1,
        8,
    )
    # The reference: the chain over the transfers in key order, one by one, from genesis,
    # written from the spec in ledgers/README.md with nothing but hashlib and hmac.
    personal_key = hmac.digest(
        bytes(range(32)), b"disburse ledger: personal fields, chain version 2", "sha256"
    )
    h = GENESIS
    for i, r in enumerate(
        frame.sort("policy_id", "benefit_period", "entity").iter_rows(named=True)
    ):
        debit, credit = f"budget:{r['policy_id']}:{r['benefit_period']}", f"payable:{r['payee']}"
        personal = canonical_content([debit, credit, r["entity"], r["payee"]])
        mac = hmac.digest(personal_key, personal.encode(), "sha256").hex()
        values = [
            i + 1,
            "grant",
            r["amount_fen"],
            run,
            r["policy_id"],
            r["benefit_period"],
            r["policy_sha256"],
            r["decision"],
            mac,
        ]
        h = hashlib.sha256((h + "v2;" + canonical_content(values)).encode()).hexdigest()
    assert result.head_hash == h
    # Pinned: a change to the canonical form would make every stored ledger fail verify.
    assert h == "27127db27fca51ce63bf7d6e131bb60fc12e239d0e3c7553fe4e159c1f63e187"
    assert audit.verify(engine, key=KEY).ok


def test_canonical_content_matches_the_reference(engine: Engine) -> None:
    post_entitlements(engine, ents(("p", "2026", PID[0], PID[1], 42)), new_run(engine), key=KEY)
    frame = audit.entries(engine, unmask=True)
    assert frame.height == 1
    with engine.connect() as conn:
        row = (
            conn.execute(select(Transfer.__table__, sha256_of(Transfer.__table__))).mappings().one()
        )
    stored = pl.DataFrame(
        [[row[name] for name in STORED_FIELDS]], schema=dict.fromkeys(STORED_FIELDS), orient="row"
    )
    assert stored.select(personal_content_expr()).item() == canonical_content(
        [row[name] for name in PERSONAL_FIELDS]
    )
    values = [row[name] for name in KEYED_FIELDS]
    assert stored.select(keyed_content_expr()).item() == keyed_content(values)
    assert stored.select(stored_content_expr()).item() == keyed_content(values)
    assert row["hash"] == hashlib.sha256((GENESIS + keyed_content(values)).encode()).hexdigest()
    assert row["prev_hash"] == GENESIS


def test_bad_entitlements_are_refused_whole_with_every_problem(engine: Engine) -> None:
    frame = ents(
        ("p", "2026", CC[0], CC[0], 10),
        ("p", "2026", CC[0], CC[0], 11),
        ("p:x", "2026", CC[1], CC[1], 10),
        ("p", "2026-13", CC[2], CC[2], -1),
    )
    with pytest.raises(LedgerError) as err:
        post_entitlements(engine, frame, new_run(engine), key=KEY)
    message = str(err.value)
    for expected in (
        "more than once",
        "policy_id is not a plain id",
        "benefit_period",
        "negative",
        "fix:",
    ):
        assert expected in message
    assert transfers(engine) == []
    with pytest.raises(LedgerError, match="not an integer"):
        post_entitlements(
            engine, frame.with_columns(pl.col("amount_fen").cast(pl.Float64)), 1, key=KEY
        )
    with pytest.raises(LedgerError, match="missing column"):
        post_entitlements(engine, frame.drop("payee"), 1, key=KEY)
    with pytest.raises(LedgerError, match="run 99 is not recorded"):
        post_entitlements(engine, ents(("p", "2026", CC[0], CC[0], 10)), 99, key=KEY)


@pytest.mark.parametrize("pg_staging", [False, True], ids=["copy", "staged"])
def test_the_key_table_is_the_last_line_of_defence(engine: Engine, pg_staging: bool) -> None:
    if pg_staging and engine.dialect.name != "postgresql":
        pytest.skip("staging is a PostgreSQL write path")
    run = new_run(engine)
    with engine.begin() as conn:
        # As if another writer had recorded the key without our seeing its grant.
        conn.execute(
            insert(EntitlementKey).values(
                policy_id="p", benefit_period="2026", entity=CC[0], transfer_id=99, run_id=run
            )
        )
    with pytest.raises(LedgerError, match=rf"p/2026/{CC[0]} is already granted"):
        post_entitlements(
            engine, ents(("p", "2026", CC[0], CC[0], 10)), run, pg_staging=pg_staging, key=KEY
        )
    assert transfers(engine) == []


def test_refusals_name_a_person_masked(engine: Engine) -> None:
    """A refused post names the key or account it refused, a resident's number masked."""
    run = new_run(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(EntitlementKey).values(
                policy_id="p", benefit_period="2026", entity=PID[0], transfer_id=99, run_id=run
            )
        )
    shown = PID[0][:6] + "*" * 10 + PID[0][-2:]
    with pytest.raises(LedgerError, match=rf"p/2026/{re.escape(shown)} is already granted") as e:
        post_entitlements(engine, ents(("p", "2026", PID[0], PID[0], 10)), run, key=KEY)
    assert PID[0] not in str(e.value)
    post_entitlements(engine, ents(("q", "2026", PID[1], PID[1], 10)), run, key=KEY)
    payee = PID[1][:6] + "*" * 10 + PID[1][-2:]
    with pytest.raises(LedgerError, match=rf"payable:{re.escape(payee)} would end at -1") as e:
        post_transfers(engine, paid(PID[1], 11), run, key=KEY)
    assert PID[1] not in str(e.value)
    bad = ents(("q", "2026", PID[1], PID[1], 10)).with_columns(policy_sha256=pl.lit("x"))
    with pytest.raises(LedgerError, match=rf"first: q/2026/{re.escape(payee)}") as e:
        post_entitlements(engine, bad, run, key=KEY)
    assert PID[1] not in str(e.value)


def test_a_crash_between_chunks_loses_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ledgers.write as write

    frame = ents(*[("p", "2026", f"E{i}", f"E{i}", 10 * (i + 1)) for i in range(5)])
    run = new_run(engine)
    real = write._write
    calls = {"n": 0}

    def dies_on_second(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process is killed mid-post
        real(*args)  # type: ignore[arg-type]

    # On PostgreSQL chunk 3 is already being written on the second connection when
    # chunk 2 dies: it must roll back, leaving the chain's prefix of chunk 1.
    monkeypatch.setattr(write, "_write", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        post_entitlements(engine, frame, run, chunk_size=2, key=KEY)
    monkeypatch.setattr(write, "_write", real)
    assert len(transfers(engine)) == 2
    result = post_entitlements(engine, frame, run, chunk_size=2, key=KEY)
    assert (result.granted, result.unchanged, result.transfers) == (3, 2, 3)
    assert audit.summary(engine).totals["amount_fen"] == 150
    assert audit.verify(engine, key=KEY).ok


def test_two_posters_at_once_never_entitle_twice(db_url: str) -> None:
    from ledgers.db import open_engine

    frame = ents(*[("p", "2026", f"E{i:04d}", f"E{i:04d}", 100) for i in range(2000)])
    with open_engine(db_url, init=True) as engine:
        runs = [new_run(engine), new_run(engine)]
        errors: list[Exception] = []

        def poster(run: int) -> None:
            try:
                post_entitlements(engine, frame, run, chunk_size=500, key=KEY)
            except LedgerError as exc:  # SQLite: the later poster finds the chain moved
                errors.append(exc)

        threads = [threading.Thread(target=poster, args=(r,)) for r in runs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert all("another poster" in str(e) for e in errors)
        post_entitlements(engine, frame, new_run(engine), key=KEY)  # finishes whatever was refused
        assert len(transfers(engine)) == 2000
        assert audit.verify(engine, key=KEY).ok


# --- append-only and tamper evidence ------------------------------------------------


def test_update_delete_and_truncate_are_refused(engine: Engine) -> None:
    post_entitlements(engine, ents(("p", "2026", CC[0], CC[0], 10)), new_run(engine), key=KEY)
    statements = [
        "UPDATE transfers SET amount_fen = amount_fen + 1",
        "DELETE FROM transfers",
        "UPDATE entitlement_keys SET entity = 'X'",
        "DELETE FROM entitlement_keys",
    ]
    copy = (
        "SELECT transfer_id, kind, debit_account, credit_account, amount_fen + 1, run_id, "
        "policy_id, benefit_period, entity, payee, policy_version_id, decision, personal_mac, "
        "prev_hash, hash FROM transfers"
    )
    key_copy = (
        "SELECT policy_id, benefit_period, entity, transfer_id + 1, run_id FROM entitlement_keys"
    )
    if engine.dialect.name == "postgresql":
        statements += [
            "TRUNCATE transfers",
            "TRUNCATE entitlement_keys",
            f"INSERT INTO transfers {copy} ON CONFLICT (transfer_id) DO UPDATE "
            "SET amount_fen = excluded.amount_fen",
            f"INSERT INTO entitlement_keys {key_copy} ON CONFLICT "
            "(policy_id, benefit_period, entity) DO UPDATE SET transfer_id = excluded.transfer_id",
        ]
    else:
        # REPLACE deletes the row in the way without firing the DELETE trigger (SQLite
        # fires delete triggers on REPLACE only with recursive_triggers on).
        statements += [
            f"INSERT OR REPLACE INTO transfers {copy}",
            f"REPLACE INTO transfers {copy}",
            f"INSERT OR REPLACE INTO entitlement_keys {key_copy}",
            f"REPLACE INTO entitlement_keys {key_copy}",
            # An upsert's SELECT needs a WHERE on SQLite to parse.
            f"INSERT INTO transfers {copy} WHERE 1 = 1 ON CONFLICT (transfer_id) DO UPDATE "
            "SET amount_fen = excluded.amount_fen",
        ]
    before = transfers(engine)
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert transfers(engine) == before
    assert audit.verify(engine, key=KEY).ok
    assert len(transfers(engine)) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EntitlementKey)).scalar_one() == 1


TAMPER: dict[str, tuple[str, str, str]] = {
    # name: (SQL run with the triggers dropped, the entry verify names, its problem)
    "amount": (
        "UPDATE transfers SET amount_fen = 1 WHERE transfer_id = 2",
        "transfer 2",
        "hash does not match its content",
    ),
    # The personal fields are checked against their keyed digest (with the ledger key).
    "account": (
        "UPDATE transfers SET credit_account = 'payable:X' WHERE transfer_id = 3",
        "transfer 3",
        "do not match their keyed digest",
    ),
    "payee": (
        "UPDATE transfers SET payee = entity || 'X' WHERE transfer_id = 2",
        "transfer 2",
        "do not match their keyed digest",
    ),
    "digest removed": (
        # Back to the unkeyed version 1, whose hash covers the fields in the clear.
        "UPDATE transfers SET personal_mac = NULL WHERE transfer_id = 3",
        "transfer 3",
        "no personal_mac (chain version 1) after transfers of version 2",
    ),
    "decision": (
        "UPDATE transfers SET decision = NULL WHERE transfer_id = 1",
        "transfer 1",
        "hash does not match its content",
    ),
    "deleted": (
        "DELETE FROM transfers WHERE transfer_id = 2",
        "transfer 3",
        "transfer 2 is missing",
    ),
    "rehashed": (
        # Changed and re-hashed by someone who knows the scheme: the next link breaks.
        "UPDATE transfers SET amount_fen = 1, hash = {rehash} WHERE transfer_id = 2",
        "transfer 3",
        "prev_hash does not match",
    ),
    "inserted": (
        # A payout slipped in at the end, copied from a real one.
        "INSERT INTO transfers (transfer_id, kind, debit_account, credit_account, amount_fen,"
        " run_id, policy_id, benefit_period, entity, payee, policy_version_id, decision,"
        " personal_mac, prev_hash, hash) SELECT 1000000, kind, debit_account, credit_account,"
        " amount_fen, run_id, policy_id, benefit_period, entity, payee, policy_version_id, decision,"
        " personal_mac, prev_hash, hash FROM transfers WHERE transfer_id = 3",
        "transfer 1000000",
        "ids jump from 3 to 1000000",
    ),
    "key": (
        "DELETE FROM entitlement_keys WHERE transfer_id = 2",
        "transfer 2",
        "key is missing",
    ),
    # The policy's sha256 is stored once, in policy_versions (migration 0013); the chain
    # still commits to it on every transfer.
    "policy version": (
        "UPDATE policy_versions SET sha256 = '" + "ab" * 32 + "'",
        "transfer 1",
        "hash does not match its content",
    ),
    "version renumbered": (
        "UPDATE transfers SET policy_version_id = 7 WHERE transfer_id = 2",
        "transfer 2",
        "hash does not match its content",
    ),
}


def test_an_edit_behind_the_engines_back_is_found(engine: Engine) -> None:
    post_entitlements(
        engine,
        ents(
            ("p", "2026", CC[0], CC[0], 100),
            ("p", "2026", CC[1], CC[1], 200),
            ("p", "2026", CC[2], CC[2], 300),
        ),
        new_run(engine),
        key=KEY,
    )
    assert audit.verify(engine, key=KEY).ok
    t, k, v = Transfer.__table__, EntitlementKey.__table__, PolicyVersion.__table__
    with engine.begin() as conn:
        drop_triggers(conn)
        saved = [dict(r) for r in conn.execute(select(t).order_by(t.c.transfer_id)).mappings()]
        saved_keys = [dict(r) for r in conn.execute(select(k)).mappings()]
        saved_versions = [dict(r) for r in conn.execute(select(v)).mappings()]
    values = [
        1 if name == "amount_fen" else (SHA if name == "policy_sha256" else saved[1][name])
        for name in KEYED_FIELDS
    ]
    rehash = hashlib.sha256((saved[1]["prev_hash"] + keyed_content(values)).encode()).hexdigest()
    # The new hash as a binary literal: the digests are stored as bytes (migration 0013).
    literal = f"'\\x{rehash}'::bytea" if engine.dialect.name == "postgresql" else f"X'{rehash}'"
    for case, (sql, entry, problem) in TAMPER.items():
        with engine.begin() as conn:
            conn.execute(text(sql.format(rehash=literal)))
        result = audit.verify(engine, key=KEY)
        bad = result.first_problem
        assert bad is not None, case
        assert str(bad.entry).startswith(entry), (case, bad)
        assert problem in str(bad.problem), (case, bad)
        with engine.begin() as conn:  # put it back as it was: verify passes again
            conn.execute(t.delete())
            conn.execute(k.delete())
            conn.execute(v.delete())
            conn.execute(v.insert(), saved_versions)
            conn.execute(t.insert(), saved)
            conn.execute(k.insert(), saved_keys)
        assert audit.verify(engine, key=KEY).ok, case


def test_the_personal_fields_need_the_ledger_key(engine: Engine) -> None:
    """Without the key verify checks everything else and says the rest is not checked;
    with another key it says the key is not the ledger's; posting refuses another key."""
    post_entitlements(
        engine,
        ents(("p", "2026", PID[0], PID[1], 100), ("p", "2026", CC[0], CC[0], 5)),
        new_run(engine),
        key=KEY,
    )
    keyless = audit.verify(engine)
    assert (keyless.ok, keyless.failed, keyless.status) == (False, False, "incomplete")
    personal = next(c for c in keyless.checks if c.name == "personal")
    assert personal.unchecked
    assert "NOT CHECKED" in keyless.to_text()
    assert keyless.to_text().startswith("INCOMPLETE: 2 transfers")
    assert all(c.ok for c in keyless.checks if c.name != "personal")
    wrong = audit.verify(engine, key=OTHER_KEY)
    assert wrong.failed
    assert wrong.first_problem is not None
    assert "not the key the ledger was written with" in str(wrong.first_problem.problem)
    with pytest.raises(LedgerError, match="is not the key this ledger was written with"):
        post_entitlements(
            engine, ents(("p", "2026", CC[1], CC[1], 5)), new_run(engine), key=OTHER_KEY
        )
    assert len(transfers(engine)) == 2
    assert audit.verify(engine, key=KEY).ok


def test_a_ledger_cut_short_is_found_with_a_recorded_head(engine: Engine) -> None:
    post_entitlements(engine, ents(("p", "2026", CC[0], CC[0], 100)), new_run(engine), key=KEY)
    recorded = audit.verify(engine, key=KEY).head_hash
    post_entitlements(engine, ents(("p", "2026", CC[1], CC[1], 100)), new_run(engine), key=KEY)
    assert audit.verify(engine, expect_head=recorded, key=KEY).ok
    with engine.begin() as conn:
        drop_triggers(conn)
        conn.execute(text("DELETE FROM transfers"))
        conn.execute(text("DELETE FROM entitlement_keys"))
    assert audit.verify(engine, key=KEY).ok  # an empty ledger is consistent in itself...
    result = audit.verify(engine, expect_head=recorded, key=KEY)
    assert not result.ok  # ...but not with what the auditor recorded
    assert result.first_problem is not None
    assert result.first_problem.name == "head"


# --- readers ------------------------------------------------------------------------


def test_entries_filter_and_mask_personal_ids(engine: Engine) -> None:
    run1, run2 = new_run(engine), new_run(engine)
    post_entitlements(engine, ents(("ent", "2026", CC[0], CC[0], 100)), run1, key=KEY)
    post_entitlements(engine, ents(("kid", "2026", PID[0], PID[1], 50)), run2, key=KEY)
    masked = audit.entries(engine, run=run2)
    row = masked.row(0, named=True)
    assert row["entity"] == PID[0][:6] + "*" * 10 + PID[0][-2:]
    assert row["payee"] == PID[1][:6] + "*" * 10 + PID[1][-2:]
    assert row["credit"] == "payable:" + row["payee"]
    assert PID[0] not in str(masked.to_dicts())
    assert audit.entries(engine, entity=CC[0]).get_column("entity").to_list() == [CC[0]]
    assert audit.entries(engine, policy="kid", unmask=True).get_column("entity").to_list() == [
        PID[0]
    ]
    assert audit.entries(engine, limit=1).height == 1
    assert audit.entries(engine, limit=None).height == 2


def _confirms(entry: dict[str, Any], prev_hash: str, candidate: str) -> bool:
    """The search on a printed, masked entry: does `candidate` (a guess of the masked
    identity number) give the printed hash, by either version of the chain's rule?"""
    if entry["hash"] is None:
        return False
    guess = {
        "entity": candidate,
        "payee": candidate,
        "debit_account": entry["debit"].split(":")[0] + ":" + candidate
        if entry["debit"].startswith(("payable:", "receivable:"))
        else entry["debit"],
        "credit_account": entry["credit"].split(":")[0] + ":" + candidate,
        "transfer_id": entry["transfer"],
        "run_id": entry["run"],
        "policy_id": entry["policy"],
        "benefit_period": entry["period"],
        "kind": entry["kind"],
        "amount_fen": entry["amount_fen"],
        "policy_sha256": entry["policy_sha256"],
        "decision": json.dumps(entry["decision"], separators=(",", ":"))
        if isinstance(entry["decision"], dict)
        else entry["decision"],
        "personal_mac": entry.get("personal_mac"),
    }
    v1 = canonical_content([guess[f] for f in audit.CHAIN_FIELDS])
    v2 = keyed_content([guess[f] for f in KEYED_FIELDS])
    return any(
        hashlib.sha256((prev_hash + content).encode()).hexdigest() == entry["hash"]
        for content in (v1, v2)
    )


def test_a_masked_entry_allows_no_search_for_the_number(engine: Engine) -> None:
    """Printed masked, an entry and its hash tell the right identity number from a wrong
    one no better than chance: the chain commits to it only through a keyed digest.
    (With the number hashed in the clear, the search took 3 s over the few million
    numbers a mask leaves: region, birth date, sequence.)"""
    post_entitlements(engine, ents(("p", "2026", PID[0], PID[0], 42)), new_run(engine), key=KEY)
    printed = audit.entries_json_lines(audit.entries(engine))
    entry = json.loads(printed.splitlines()[0])
    assert entry["entity"] == PID[0][:6] + "*" * 10 + PID[0][-2:]
    assert entry["hash"] is not None
    assert _confirms(entry, GENESIS, PID[0]) == _confirms(entry, GENESIS, PID[1])
    # The search does tell them apart where the hash covers the number in the clear
    # (chain version 1): the check above can fail.
    with engine.connect() as conn:
        row = (
            conn.execute(select(Transfer.__table__, sha256_of(Transfer.__table__))).mappings().one()
        )
    v1 = canonical_content([row[f] for f in audit.CHAIN_FIELDS])
    clear = {**entry, "hash": hashlib.sha256((GENESIS + v1).encode()).hexdigest()}
    assert _confirms(clear, GENESIS, PID[0]) is True
    assert _confirms(clear, GENESIS, PID[1]) is False


def test_summary_and_balances(engine: Engine) -> None:
    post_entitlements(
        engine,
        ents(
            ("a", "2026", CC[0], CC[0], 1_000_00),
            ("a", "2026", CC[1], CC[1], 50),
            ("b", "2026-Q1", PID[0], PID[0], 7),
        ),
        new_run(engine),
        key=KEY,
    )
    post_entitlements(engine, ents(("a", "2026", CC[1], CC[1], 0)), new_run(engine), key=KEY)
    s = audit.summary(engine)
    assert s.rows.to_dicts() == [
        {
            "policy_id": "a",
            "benefit_period": "2026",
            "count": 1,
            "amount_fen": 1_000_00,
            "adjustments": 1,
            "reversed": 1,
        },
        {
            "policy_id": "b",
            "benefit_period": "2026-Q1",
            "count": 1,
            "amount_fen": 7,
            "adjustments": 0,
            "reversed": 0,
        },
    ]
    assert s.totals == {"count": 2, "amount_fen": 1_000_07, "adjustments": 1, "reversed": 1}
    assert s.to_text() == audit.summary(engine).to_text()
    b = audit.balances(engine)
    assert b.totals["balance_fen"] == 0
    assert b.totals["debits_fen"] == b.totals["credits_fen"] == 1_000_00 + 50 + 7 + 50
    assert PID[0] not in b.to_text()
    assert audit.balances(engine, kind="budget").accounts.get_column("account").to_list() == [
        "budget:a:2026",
        "budget:b:2026-Q1",
    ]


def test_an_existing_ledger_takes_offsets_and_recoveries_after_0011(db_url: str) -> None:
    """Migration 0011 widens the kinds a transfer may have, in place: a ledger at 0010
    refuses an offset; upgraded, it takes one, the chain still verifies and the ledger is
    still append-only (its triggers survived: SQLite's schema is rewritten, not copied)."""
    from ledgers.db import open_engine

    offset = pl.DataFrame(
        [("offset", f"payable:{CC[0]}", f"receivable:{CC[0]}", 40, "p", "2026", CC[0], CC[0])],
        schema=["kind", "debit_account", "credit_account", "amount_fen",
                "policy_id", "benefit_period", "entity", "payee"],
        orient="row",
    )  # fmt: skip
    with open_engine(db_url) as engine:
        init_schema(engine, "0010")
        run = new_run(engine)
        # Paid, then taken back (a clawback: the payee owes 100), then granted again:
        # written as an engine before migration 0013 stored them.
        key = ("p", "2026", CC[0], CC[0])
        insert_as_before_0013(
            engine,
            [
                ("grant", "budget:p:2026", f"payable:{CC[0]}", 100, *key, SHA),
                ("instructed", f"payable:{CC[0]}", "clearing:bank", 100, *key, None),
                ("clawback", f"receivable:{CC[0]}", "budget:p:2026", 100, *key, SHA),
                ("grant", "budget:p:2027", f"payable:{CC[0]}", 100, "p", "2027", CC[0], CC[0], SHA),
            ],
            run,
        )
        with pytest.raises(DBAPIError, match=r"ck_transfers_kind|CHECK constraint"):
            insert_as_before_0013(engine, [(*offset.row(0), None)], run)
        init_schema(engine)
        assert schema_revision(engine) == HEAD_REVISION
        assert post_transfers(engine, offset, run, key=KEY) == 1
        kinds = [t[1] for t in transfers(engine)]
        assert kinds == ["grant", "instructed", "clawback", "grant", "offset"]
        assert audit.verify(engine, key=KEY).ok
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text("UPDATE transfers SET amount_fen = 1 WHERE kind = 'offset'"))
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO transfers (transfer_id, kind, debit_account, credit_account, "
                    "amount_fen, run_id, prev_hash, hash) VALUES (99, 'gift', 'a:b', 'c:d', 1, 1, "
                    "'x', 'y')"
                )
            )


def test_migration_0013_keeps_every_hash_and_policy_sha256(db_url: str) -> None:
    """Migration 0013 stores the digests as bytes and the policy sha256 once per version:
    the auditors' views show exactly what they showed, every hash verifies, the versions
    are numbered in the order first posted, and the downgrade gives the old rows back."""
    from alembic import command

    from ledgers.db import _alembic_config, open_engine

    other = "6" * 64
    with open_engine(db_url) as engine:
        init_schema(engine, "0012")
        run = new_run(engine)
        hashes = insert_as_before_0013(
            engine,
            [
                ("grant", "budget:p:2026", f"payable:{CC[0]}", 100, "p", "2026", CC[0], CC[0], SHA),
                ("grant", "budget:q:2026", f"payable:{PID[0]}", 7, "q", "2026", PID[0], PID[0], other),
                ("instructed", f"payable:{CC[0]}", "clearing:bank", 100, "p", "2026", CC[0], CC[0], None),
                ("grant", "budget:p:2027", f"payable:{CC[1]}", 50, "p", "2027", CC[1], CC[1], other),
            ],
            run,
        )  # fmt: skip

        def shown() -> dict[str, list[tuple[Any, ...]]]:
            with engine.connect() as conn:
                return {
                    view: [
                        tuple(r)
                        for r in conn.execute(text(f"SELECT * FROM {view} ORDER BY transfer_id"))
                    ]
                    for view in ("audit_transfers", "audit_transfers_unmasked")
                }

        before = shown()
        init_schema(engine)
        assert schema_revision(engine) == HEAD_REVISION
        assert shown() == before
        result = audit.verify(engine, key=KEY)
        assert result.ok, result.to_text()
        assert result.head_hash == hashes[-1]
        with engine.connect() as conn:
            numbered = conn.execute(
                text("SELECT policy_version_id, policy_id, sha256 FROM policy_versions ORDER BY 1")
            ).all()
            stored = conn.execute(
                text("SELECT policy_version_id, hash FROM transfers ORDER BY transfer_id")
            ).all()
        assert [tuple(r) for r in numbered] == [(1, "p", SHA), (2, "q", other), (3, "p", other)]
        assert [r[0] for r in stored] == [1, 2, None, 3]
        assert [bytes(r[1]) for r in stored] == [bytes.fromhex(h) for h in hashes]
        # The engine goes on posting: an existing version keeps its number, a new one is next.
        post_entitlements(
            engine,
            ents(("p", "2026", CC[0], CC[0], 120), ("r", "2026", CC[2], CC[2], 5)),
            new_run(engine),
            key=KEY,
        )
        assert audit.verify(engine, key=KEY).ok
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM policy_versions")).scalar_one() == 4
        after = shown()
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0012")
        assert shown() == after
        with engine.connect() as conn:
            olds = conn.execute(
                text("SELECT policy_sha256, hash FROM transfers ORDER BY transfer_id")
            ).all()
        assert [r[1] for r in olds[:4]] == hashes
        assert [r[0] for r in olds] == [SHA, other, None, other, SHA, SHA]
