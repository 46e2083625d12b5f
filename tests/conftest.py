"""Shared fixtures: one database fixture, two backends (SQLite and PostgreSQL), and the
synthetic cities that several modules read.

PostgreSQL is reached at $DISBURSE_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
each test gets a database of its own, dropped afterwards.  When the server
cannot be reached the PostgreSQL half is skipped, except under CI=true, where
it fails: CI must exercise the real database.

The synthetic cities are generated once per test session and are read-only: a test
that changes a file copies the city to its own `tmp_path` first.  Each city checks
at the end of the session that no file in it changed.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get(
    "DISBURSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_database() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"disburse_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to reach the server
        admin.dispose()
        message = f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite golden and expected-message files"
    )
    parser.addoption(
        "--all-kill-points",
        action="store_true",
        help="kill the nightly run at every kill point (the default under CI=true; "
        "a local run takes a fixed sample)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files instead of comparing with them."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from _pg_database()


@pytest.fixture
def other_db_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second fresh, empty database on the same backend as `db_url`."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other-ledger.db'}"
    else:
        yield from _pg_database()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database with the schema created, disposed after the test."""
    from ledgers.db import open_engine

    with open_engine(db_url, init=True) as eng:
        yield eng


def _fingerprint(folder: Path) -> dict[str, str]:
    """The sha256 of every file under `folder`, by relative path."""
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def _read_only_city(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    enterprises: int,
    persons: int,
    seed: int,
    errors: float,
) -> Iterator[Path]:
    """Generate a synthetic city once; after the session, fail if any test changed it."""
    from disburse.synth import generate

    out = tmp_path_factory.mktemp(name) / "data"
    generate(out, enterprises=enterprises, persons=persons, seed=seed, errors=errors)
    before = _fingerprint(out)
    yield out
    assert _fingerprint(out) == before, (
        f"a test changed the shared city {out}: copy it to tmp_path before changing it"
    )


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A synthetic city with about 1% of rows broken (every kind of error at least once),
    large enough that a nightly run posts more than 600 transfers: the folder of its source
    files and manifest.json.  Read-only."""
    yield from _read_only_city(
        tmp_path_factory, "city", enterprises=800, persons=3000, seed=7, errors=0.01
    )


@pytest.fixture(scope="session")
def clean_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small synthetic city without broken rows (the golden explanations are taken from
    it: its size and seed are fixed).  Read-only."""
    yield from _read_only_city(
        tmp_path_factory, "clean-city", enterprises=400, persons=2000, seed=11, errors=0.0
    )
