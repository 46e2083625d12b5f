"""The ledger key: the secret, held outside the database, behind the chain's personal fields
and the run checkpoints' signatures.

Why a secret at all: a resident identity number has few possible values (a region,
a birth date, three digits and a check character: a few million once the printed
6 + 2 characters are known).  If the chain hashed it in the clear, anyone holding
a masked entry and its hash could try them all in seconds and unmask it.  So the
chain commits to a transfer's personal fields (`ledgers.chain.PERSONAL_FIELDS`)
through `personal_mac`, an HMAC-SHA256 under this key: without the key there is
nothing to search against.

One secret, two derived keys (HMAC-SHA256 of the secret and a label), so a digest
made for one purpose can never pass for the other: `personal` keys the personal
fields' digests, `signing` signs checkpoints (`ledgers.checkpoints`).  One file
to keep and back up, instead of two that must never be mixed up.

Where the key is: the file `$DISBURSE_LEDGER_KEY_FILE`, else `<store>/ledger.key`
(`key_file`).  It holds the secret as 64 hexadecimal characters (32 random bytes;
`openssl rand -hex 32` makes one).  On first use (the first post into a ledger
that has no keyed transfer yet) the engine creates it, readable by its owner
only.  Lost, it cannot be recreated: the ledger still verifies everything but
the personal fields, and `audit verify` says so; posting refuses to continue the
chain under another key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from ledgers.db import LedgerError
from ledgers.schema import Transfer

KEY_FILE_ENV = "DISBURSE_LEDGER_KEY_FILE"
KEY_FILE_NAME = "ledger.key"
SECRET_BYTES = 32
_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class LedgerKey:
    """The ledger's secret and the keys derived from it; `source` says where it was read."""

    secret: bytes = field(repr=False)
    source: str = "the ledger key"

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise LedgerError(
                f"{self.source}: a ledger key needs at least 16 bytes of secret",
                fix="make one with `openssl rand -hex 32`",
            )

    @classmethod
    def from_secret(cls, secret: bytes, source: str = "the ledger key") -> LedgerKey:
        """A key from its secret bytes (tests and tools; the engine reads a file)."""
        return cls(secret, source)

    def _derived(self, label: bytes) -> bytes:
        return hmac.digest(self.secret, label, "sha256")

    @property
    def personal(self) -> bytes:
        """The key of the personal fields' digests."""
        return self._derived(b"disburse ledger: personal fields, chain version 2")

    @property
    def signing(self) -> bytes:
        """The key that signs checkpoints."""
        return self._derived(b"disburse ledger: checkpoint signature, version 1")

    @property
    def key_id(self) -> str:
        """A public name of the key (16 hex characters), to tell keys apart in messages."""
        return self._derived(b"disburse ledger: key id").hex()[:16]

    def personal_hmac(self) -> tuple[Any, Any]:
        """The HMAC-SHA256 of the personal key as its two SHA-256 states (RFC 2104: the key
        xor ipad, the key xor opad, each hashed as the first block), to be copied per
        message: half the cost of `hmac.digest` per call, the same digest."""
        block = self.personal.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        return inner, outer

    def personal_macs(self, contents: Sequence[str]) -> list[str]:
        """HMAC-SHA256 (hex) of each personal content under the personal key.

        One loop over rows, like the chain's own (`ledgers.chain.chain`): about a
        microsecond per transfer.
        """
        inner, outer = self.personal_hmac()
        out: list[str] = []
        append = out.append
        for c in contents:
            i = inner.copy()
            i.update(c.encode())
            o = outer.copy()
            o.update(i.digest())
            append(o.hexdigest())
        return out

    def sign(self, payload: bytes) -> str:
        """The signature of `payload`: HMAC-SHA256 under the signing key, hex."""
        return hmac.new(self.signing, payload, hashlib.sha256).hexdigest()

    def signed_by(self, payload: bytes, signature: str) -> bool:
        """True if `signature` is this key's signature of `payload` (compared in constant time)."""
        return hmac.compare_digest(self.sign(payload), signature)


def key_file(store: Path) -> Path:
    """Where the ledger key is: `$DISBURSE_LEDGER_KEY_FILE`, else `<store>/ledger.key`."""
    env = os.environ.get(KEY_FILE_ENV, "").strip()
    return Path(env) if env else store / KEY_FILE_NAME


def read_key(path: Path) -> LedgerKey:
    """The key in `path`, or a LedgerError saying what is wrong with the file."""
    try:
        raw = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise LedgerError(
            f"the ledger key file {path} does not exist",
            fix=f"set {KEY_FILE_ENV} to the key file (restore it from its backup if it is lost)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
        raise LedgerError(
            f"cannot read the ledger key file {path}: {reason}",
            fix="the file holds 64 hexadecimal characters, readable by the user that runs disburse",
        ) from None
    if not _HEX.fullmatch(raw):
        raise LedgerError(
            f"the ledger key file {path} does not hold a key (64 hexadecimal characters)",
            fix="restore it from its backup; a new ledger's key is made with `openssl rand -hex 32`",
        )
    return LedgerKey(bytes.fromhex(raw), f"the ledger key {path}")


def find_key(path: Path) -> LedgerKey | None:
    """The key in `path`, or None if there is no such file (other problems raise)."""
    return read_key(path) if path.exists() else None


def create_key(path: Path) -> LedgerKey:
    """Write a new random key to `path` (owner-only), or read the one another process just wrote."""
    try:
        _write_new_key(path)
    except OSError as exc:
        raise LedgerError(
            f"cannot write the ledger key file {path}: {exc.strerror}",
            fix=f"set {KEY_FILE_ENV} to a file in a folder the batch may write, or make the "
            "key there yourself with `openssl rand -hex 32`",
        ) from None
    return read_key(path)


def _write_new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private name, then linked into place: the key file is either
    # absent or complete (a crash never leaves half a key), and of two processes
    # creating it at once, one wins and both use its key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(SECRET_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def posting_key(engine: Engine, path: Path, log: Callable[[str], None] | None = None) -> LedgerKey:
    """The key to post with: the one in `path`, or a new one written there if the ledger
    has no keyed transfer yet (its first use; `log` is told where it went).

    A missing key for a ledger that has keyed transfers is an error: a new key
    cannot continue the chain, the lost one must be restored.
    """
    found = find_key(path)
    if found is not None:
        return found
    t = Transfer.__table__
    with engine.connect() as conn:
        last = conn.execute(
            select(t.c.transfer_id, t.c.personal_mac).order_by(t.c.transfer_id.desc()).limit(1)
        ).first()
    if last is not None and last.personal_mac is not None:
        raise LedgerError(
            f"the ledger key file {path} is missing, and the ledger's transfers were chained "
            "under a key (nothing was posted)",
            fix=f"restore the key file from its backup, or set {KEY_FILE_ENV} to where it "
            "is; a new key cannot continue this ledger",
        )
    key = create_key(path)
    if log is not None:
        log(
            f"created the ledger key {path} (key id {key.key_id}): back it up and keep it "
            "apart from the database; without it the ledger's personal fields cannot be verified"
        )
    return key


__all__ = [
    "KEY_FILE_ENV",
    "KEY_FILE_NAME",
    "LedgerKey",
    "create_key",
    "find_key",
    "key_file",
    "posting_key",
    "read_key",
]
