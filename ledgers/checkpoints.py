"""Checkpoints: the ledger's head after a run, signed and kept outside the tables.

The chain proves that no stored transfer was changed without recomputing every
hash after it, but whoever can write the tables can do exactly that: cut the
tail off, or rewrite the whole chain with fresh hashes, and the ledger is again
consistent in itself.  What anchors it is a record of its head kept where the
tables' writers cannot reach.  So each nightly run writes its head (the last
transfer's id and hash) and the totals up to it to a checkpoint file beside the
run's archive, `<store>/runs/<id>/checkpoint.json`, and prints it in the run's
summary, so finance can file a copy elsewhere (a ticket, an e-mail to the
auditors, paper).  `audit verify --checkpoint FILE` then proves the ledger
extends it: the transfer at the checkpoint's id still has its hash, the chain up
to it recomputes from genesis, the totals up to it are the recorded ones, and no
transfer after it claims a run that had already ended when it was written.

The file is signed: HMAC-SHA256 under the signing key derived from the ledger
key (`ledgers.keys`), over the file's other fields as compact JSON with sorted
keys.  The signature shows the file came from the engine: a database
administrator who rewrites the chain and can also write the store cannot make a
checkpoint for the rewritten chain without the key.  The same secret as the
personal fields' digests, under its own derived key: one file to keep safe, and
no digest of one kind can pass for the other.  An HMAC, not a public-key
signature, because whoever checks it holds the key anyway (it is needed for the
personal fields).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, func, select

from common.money import format_yuan
from ledgers.checks import Check
from ledgers.db import LedgerError
from ledgers.frames import read_frame
from ledgers.holdings import chain_head
from ledgers.keys import LedgerKey
from ledgers.runs import get_run
from ledgers.schema import Transfer

FORMAT = "disburse-checkpoint-1"
FILE_NAME = "checkpoint.json"


@dataclass(frozen=True)
class KindTotal:
    """Transfers of one kind up to the head, and their amount."""

    transfers: int
    amount_fen: int


@dataclass(frozen=True)
class Checkpoint:
    """The ledger's head after a run, the totals up to it, and the signature over them."""

    run_id: int
    transfer_id: int  # the head: the last transfer's id (0 for an empty ledger)
    hash: str  # its hash (the genesis hash for an empty ledger)
    transfers: int
    amount_fen: int
    by_kind: dict[str, KindTotal]
    key_id: str
    written_at: str  # UTC, ISO 8601
    signature: str = field(default="")

    def signed_part(self) -> dict[str, Any]:
        """Everything the signature covers: every field but the signature, as plain data."""
        data = asdict(self)
        data.pop("signature")
        return {"format": FORMAT, **data}

    def payload(self) -> bytes:
        """The bytes signed: the signed part as compact JSON with sorted keys."""
        return json.dumps(self.signed_part(), sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {**self.signed_part(), "signature": self.signature}

    def describe(self) -> str:
        """One line for people: the head and the totals."""
        return (
            f"head transfer {self.transfer_id} hash {self.hash}; {self.transfers:,} transfers "
            f"moving {format_yuan(self.amount_fen)} yuan; signed by key {self.key_id}"
        )


def checkpoint_path(store: Path, run_id: int) -> Path:
    """Where a run's checkpoint is kept: beside its archive."""
    return store / "runs" / str(run_id) / FILE_NAME


def ledger_checkpoint(engine: Engine, run_id: int, key: LedgerKey) -> Checkpoint:
    """The ledger's current head and the totals up to it, signed with `key`."""
    t = Transfer.__table__
    with engine.connect() as conn:
        head_id, head_hash = chain_head(conn)
        # Up to the head read above: a transfer written meanwhile is not counted.
        stmt = (
            select(t.c.kind, func.count(), func.sum(t.c.amount_fen))
            .where(t.c.transfer_id <= head_id)
            .group_by(t.c.kind)
            .order_by(t.c.kind)
        )
        kinds = read_frame(
            conn, stmt, {"kind": pl.String, "transfers": pl.Int64, "amount_fen": pl.Int64}
        )
    by_kind = {
        str(r["kind"]): KindTotal(int(r["transfers"]), int(r["amount_fen"]))
        for r in kinds.iter_rows(named=True)
    }
    cp = Checkpoint(
        run_id=run_id,
        transfer_id=head_id,
        hash=head_hash,
        transfers=sum(k.transfers for k in by_kind.values()),
        amount_fen=sum(k.amount_fen for k in by_kind.values()),
        by_kind=by_kind,
        key_id=key.key_id,
        written_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return _signed(cp, key)


def _signed(cp: Checkpoint, key: LedgerKey) -> Checkpoint:
    return dataclasses.replace(cp, signature=key.sign(cp.payload()))


def run_checkpoint_path(engine: Engine, run_id: int) -> Path | None:
    """Where a run's checkpoint is kept: beside its archive, under the store it recorded."""
    run = get_run(engine, run_id)
    if run is None or run.store_dir is None:
        return None
    return checkpoint_path(Path(run.store_dir), run_id)


def write_checkpoint(engine: Engine, run_id: int, key: LedgerKey) -> Path:
    """Write the ledger's signed head beside the run's archive
    (`<store>/runs/<run_id>/checkpoint.json`); the path.

    Written whole under a temporary name and renamed into place: a reader finds
    the old file or the new one, never half of one.
    """
    path = run_checkpoint_path(engine, run_id)
    if path is None:
        raise LedgerError(
            f"run {run_id} records no store folder, so it has no place for its checkpoint",
            fix="checkpoints are written by nightly runs (`disburse run`)",
        )
    cp = ledger_checkpoint(engine, run_id, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cp.to_json(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise LedgerError(
            f"cannot write the checkpoint {path}: {exc.strerror}",
            fix="give the run a store folder it may write (--store or $DISBURSE_STORE), "
            "then run again: the run finishes from where it stopped",
        ) from None
    return path


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in `path`, or a LedgerError saying what is wrong with the file."""
    fix = "give the checkpoint.json a run wrote (the run summary names it), unchanged"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LedgerError(f"the checkpoint file {path} does not exist", fix=fix) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LedgerError(f"cannot read the checkpoint file {path}: {exc}", fix=fix) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LedgerError(f"{path} is not a disburse checkpoint ({FORMAT})", fix=fix)
    try:
        kinds = data["by_kind"]
        cp = Checkpoint(
            run_id=_int(data["run_id"]),
            transfer_id=_int(data["transfer_id"]),
            hash=_str(data["hash"]),
            transfers=_int(data["transfers"]),
            amount_fen=_int(data["amount_fen"]),
            by_kind={
                _str(k): KindTotal(_int(v["transfers"]), _int(v["amount_fen"]))
                for k, v in kinds.items()
            },
            key_id=_str(data["key_id"]),
            written_at=_str(data["written_at"]),
            signature=_str(data["signature"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(
            f"the checkpoint {path} is incomplete or malformed ({exc})", fix=fix
        ) from None
    return cp


class Anchor:
    """What verify gathers, in its one pass over the transfers, to check one checkpoint."""

    def __init__(self, checkpoint: Checkpoint, source: str) -> None:
        self.cp = checkpoint
        self.source = source  # the file, for messages
        self.hash_at: str | None = None  # the stored hash of the transfer at the checkpoint's id
        self._kinds: list[pl.DataFrame] = []
        self.after = 0  # transfers after the checkpoint's head
        self.after_runs: tuple[int, int] | None = None  # the lowest and highest run among them
        self.claimed: dict[str, Any] | None = None  # the first after it claiming an ended run

    def add(self, frame: pl.DataFrame) -> None:
        """Gather from the next batch of transfers (in id order)."""
        head = self.cp.transfer_id
        at = frame.filter(pl.col("transfer_id") == head)
        if at.height:
            self.hash_at = str(at.get_column("hash")[0])
        upto = frame.filter(pl.col("transfer_id") <= head)
        if upto.height:
            self._kinds.append(
                upto.group_by("kind").agg(
                    pl.len().cast(pl.Int64).alias("transfers"), pl.col("amount_fen").sum()
                )
            )
        later = frame.filter(pl.col("transfer_id") > head)
        if later.height == 0:
            return
        self.after += later.height
        low, high = int(later.get_column("run_id").min()), int(later.get_column("run_id").max())  # type: ignore[arg-type]
        self.after_runs = (
            (min(low, self.after_runs[0]), max(high, self.after_runs[1]))
            if self.after_runs
            else (low, high)
        )
        if self.claimed is None:
            # The run that wrote the checkpoint had ended, and so had every run before it:
            # runs post in the order they start (one at a time; an interrupted one is
            # finished before the next starts), so nothing after the head is theirs.
            ended = later.filter(pl.col("run_id") <= self.cp.run_id)
            if ended.height:
                self.claimed = ended.row(0, named=True)

    def totals(self) -> dict[str, KindTotal]:
        """Transfers and amount per kind up to the checkpoint's head, as the ledger holds them."""
        if not self._kinds:
            return {}
        summed = pl.concat(self._kinds).group_by("kind").agg(pl.all().sum()).sort("kind")
        return {
            str(r["kind"]): KindTotal(int(r["transfers"]), int(r["amount_fen"]))
            for r in summed.iter_rows(named=True)
        }

    def check(self, key: LedgerKey | None, broken_at: int | None, ledger_head: int) -> Check:
        """Does the ledger extend the checkpoint?  The first reason it does not, else ok
        (or not checked, if only the signature could not be checked for want of the key)."""
        cp = self.cp
        what = f"the checkpoint of run {cp.run_id} ({self.source})"
        head = f"transfer {cp.transfer_id}"

        def fail(detail: str, entry: str, problem: str) -> Check:
            return Check("checkpoint", False, detail, entry, problem)

        if key is not None and cp.key_id != key.key_id:
            return fail(
                f"{what} is signed by another key",
                self.source,
                f"it names key {cp.key_id}, and this key is {key.key_id}: give the ledger's own key",
            )
        if key is not None and not key.signed_by(cp.payload(), cp.signature):
            return fail(
                f"{what} is not as the engine signed it",
                self.source,
                "its signature does not match its content: the file was changed after it was written",
            )
        if cp.transfer_id > 0 and self.hash_at is None:
            return fail(
                f"the ledger does not extend {what}",
                head,
                f"the checkpoint's head is missing: the ledger ends at transfer {ledger_head}; "
                "transfers were removed after the checkpoint was written",
            )
        if cp.transfer_id > 0 and self.hash_at != cp.hash:
            return fail(
                f"the ledger does not extend {what}",
                head,
                f"its hash is {self.hash_at}, the checkpoint recorded {cp.hash}: "
                "the chain up to it was rewritten",
            )
        if broken_at is not None and broken_at <= cp.transfer_id:
            return fail(
                f"the ledger does not extend {what}",
                f"transfer {broken_at}",
                "the chain up to the checkpoint's head does not recompute (see the chain check)",
            )
        held = self.totals()
        if held != cp.by_kind:
            n = sum(k.transfers for k in held.values())
            fen = sum(k.amount_fen for k in held.values())
            return fail(
                f"the ledger does not extend {what}",
                head,
                f"up to it the ledger holds {n:,} transfers of {fen} fen "
                f"({_kinds(held)}); the checkpoint recorded {cp.transfers:,} of {cp.amount_fen} fen "
                f"({_kinds(cp.by_kind)})",
            )
        if self.claimed is not None:
            tid, run = self.claimed["transfer_id"], self.claimed["run_id"]
            return fail(
                f"a transfer after {what} claims a run that had ended",
                f"transfer {tid}",
                f"it was written after the checkpoint yet names run {run}, which had ended "
                f"by then (runs up to {cp.run_id} had)",
            )
        later = (
            f"; {self.after:,} transfers after it, by runs {self.after_runs[0]} to {self.after_runs[1]}, "
            "are not anchored by it"
            if self.after_runs
            else "; nothing after it"
        )
        detail = f"the ledger extends {what}: {cp.describe()}{later}"
        if key is None:
            return Check(
                "checkpoint",
                False,
                detail,
                problem="give the ledger key (--key-file, or $DISBURSE_LEDGER_KEY_FILE) to check "
                "the checkpoint's signature",
                unchecked=True,
            )
        return Check("checkpoint", True, detail)


def _kinds(totals: dict[str, KindTotal]) -> str:
    return ", ".join(f"{k} {v.transfers:,}" for k, v in sorted(totals.items())) or "none"


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not a whole number")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


__all__ = [
    "FILE_NAME",
    "Anchor",
    "Checkpoint",
    "KindTotal",
    "checkpoint_path",
    "ledger_checkpoint",
    "read_checkpoint",
    "run_checkpoint_path",
    "write_checkpoint",
]
