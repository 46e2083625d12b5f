"""The ledger key: found where the run keeps it, made on first use (owner-only, never half
written), never replaced once the ledger depends on it; its errors say what to do."""

from __future__ import annotations

import datetime as dt
import stat
import threading
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine

from ledgers.db import LedgerError
from ledgers.keys import KEY_FILE_ENV, create_key, find_key, key_file, posting_key, read_key
from ledgers.post import ENTITLEMENT_COLUMNS, post_entitlements
from ledgers.runs import start_run
from tests import minicity

PID = minicity.person_ids(2)


def _post(engine: Engine, key_path: Path) -> None:
    with engine.begin() as conn:
        run = start_run(conn, kind="post", as_of=dt.date(2026, 1, 1))
    frame = pl.DataFrame(
        [("p", "2026", PID[0], PID[1], 100, "5" * 64, None)],
        schema=ENTITLEMENT_COLUMNS,
        orient="row",
    )
    post_entitlements(engine, frame, run, key=posting_key(engine, key_path))


def test_the_key_is_made_on_first_use_readable_by_its_owner_only(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "store" / "ledger.key"
    said: list[str] = []
    key = posting_key(engine, path, said.append)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert len(text.strip()) == 64
    assert int(text, 16) >= 0
    assert [m for m in said if str(path) in m and "back it up" in m and key.key_id in m]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    # Found the next time, the same key; nothing said.
    again = posting_key(engine, path, said.append)
    assert again.secret == key.secret
    assert len(said) == 1


def test_a_lost_key_is_not_replaced_once_the_ledger_depends_on_it(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.key"
    _post(engine, path)
    path.unlink()
    with pytest.raises(LedgerError, match="is missing, and the ledger's transfers were chained"):
        posting_key(engine, path)
    assert not path.exists()


def test_two_processes_making_the_key_at_once_share_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    made: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: made.append(create_key(path).secret)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1
    assert read_key(path).secret == made[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.key"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "does not hold a key"),
        ("abc\n", "does not hold a key"),
        ("zz" * 32, "does not hold a key"),
        (b"\xff\xfe".decode("latin-1") * 32, "cannot read the ledger key file"),
    ],
    ids=["empty", "short", "not hex", "not text"],
)
def test_a_bad_key_file_is_refused_with_what_to_do(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "ledger.key"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(LedgerError, match=message) as caught:
        read_key(path)
    assert "fix:" in str(caught.value)
    assert find_key(tmp_path / "none.key") is None


def test_where_the_key_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert key_file(tmp_path / "store") == tmp_path / "store" / "ledger.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "secure" / "disburse.key"))
    assert key_file(tmp_path / "store") == tmp_path / "secure" / "disburse.key"


def test_a_key_that_cannot_be_written_is_a_clean_error(engine: Engine, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(LedgerError, match="cannot write the ledger key file") as caught:
        posting_key(engine, blocker / "ledger.key")
    assert "fix:" in str(caught.value)
