"""The vendored ISO 20022 schemas, and reading a large XML file against one in constant memory.

`stream_valid` is the one way this package reads XML: lxml's `iterparse` with the schema
(libxml2 validates as it parses, so a million transactions never sit in memory), each
record element cleared once its caller has read it.  Two lxml facts shape it:

* libxml2's streaming validator reports no line numbers (and lxml raises its error only
  when the document ends).  When a file fails, a second pass (`_locate`) finds the line:
  it validates each record on its own against the record's type, then the document with
  all but the first and last record of each group taken out.  Only a failing file pays it.
* `iterparse(..., schema=..., resolve_entities=False)` accepts a truncated document
  (lxml 6.0, libxml2 2.14), so that option is never passed: lxml >= 5 already resolves
  no external entities, and a DOCTYPE, which bank files never carry, is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from common.errors import DisburseError

XSD_DIR = Path(__file__).resolve().parent / "xsd"
CHUNK_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class Message:
    """One ISO 20022 message definition disburse reads or writes, and its repeated record."""

    name: str  # pain.001.001.09
    what: str  # the message's name in words, for errors
    record: str  # the element repeated once per transaction
    record_type: str  # its complex type in the XSD
    fix: str  # what to do about a file of this message that fails its schema

    @property
    def namespace(self) -> str:
        """The XML namespace of the message, which names its version."""
        return f"urn:iso:std:iso:20022:tech:xsd:{self.name}"

    @property
    def xsd(self) -> Path:
        """The vendored XSD of the message."""
        return XSD_DIR / f"{self.name}.xsd"

    def tag(self, *path: str) -> str:
        """Clark notation of an element of the message (`{ns}Tag`), or an
        ElementPath of several (`{ns}Amt/{ns}InstdAmt`)."""
        return "/".join(f"{{{self.namespace}}}{p}" for p in path)


PAIN001 = Message(
    "pain.001.001.09",
    "payment instructions (pain.001 CustomerCreditTransferInitiation)",
    "CdtTrfTxInf",
    "CreditTransferTransaction34",
    "nothing was written under the target name; the instructions passed disburse's own "
    "checks, so report this as a bug with the message above",
)
PAIN002 = Message(
    "pain.002.001.12",
    "bank status report (pain.002 CustomerPaymentStatusReport)",
    "TxInfAndSts",
    "PaymentTransaction129",
    "nothing was imported; ask the bank for a reply that passes the ISO 20022 "
    "pain.002.001.12 schema (the element named above does not)",
)


def vendored_sha256() -> dict[str, str]:
    """The sha256 recorded in xsd/SHA256SUMS for each vendored XSD, by file name."""
    sums: dict[str, str] = {}
    for line in (XSD_DIR / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


@functools.cache
def schema(message: Message) -> etree.XMLSchema:
    """The message's XSD, checked against its recorded sha256 and compiled once."""
    data = message.xsd.read_bytes()
    if hashlib.sha256(data).hexdigest() != vendored_sha256().get(message.xsd.name):
        raise DisburseError(
            f"the vendored schema {message.xsd} is not the ISO 20022 publication it should be",
            fix="reinstall disburse; the XSDs in jobs/bankfiles/xsd must match xsd/SHA256SUMS",
        )
    return etree.XMLSchema(etree.fromstring(data, base_url=message.xsd.as_uri()))


@functools.cache
def record_schema(message: Message) -> etree.XMLSchema:
    """The XSD with the record's type declared as a global element, to validate one record."""
    schema(message)  # checks the vendored file
    text = (
        f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="{message.namespace}" '
        f'targetNamespace="{message.namespace}" elementFormDefault="qualified">'
        f'<xs:include schemaLocation="{message.xsd.as_uri()}"/>'
        f'<xs:element name="{message.record}" type="{message.record_type}"/></xs:schema>'
    )
    return etree.XMLSchema(etree.fromstring(text.encode()))


class _HashingReader:
    """A binary file whose bytes are hashed as a parser reads them: one pass both
    validates a file and gives its sha256."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        return data


@dataclass(slots=True)
class Stream:
    """What a validating pass saw: the sha256 of the bytes read (complete once the pass ends)."""

    sha256: str = ""


def stream_valid(
    path: Path, message: Message, tags: tuple[str, ...], *, shown: str | None = None
) -> tuple[Stream, Iterator[etree._Element]]:
    """Validate `path` against the message's XSD while reading it, yielding each element
    whose tag (Clark notation) is in `tags` at its end.

    The caller reads each element when it is yielded; a record element is cleared, and
    the records before it dropped, when the caller asks for the next.  The returned
    `Stream` holds the file's sha256 once the iterator is exhausted.  Any failure is a
    `DisburseError` naming `shown` (default: the path) and the line."""
    stream = Stream()
    return stream, _stream(path, message, tags, shown or str(path), stream)


def _stream(
    path: Path, message: Message, tags: tuple[str, ...], shown: str, stream: Stream
) -> Iterator[etree._Element]:
    record = message.tag(message.record)
    try:
        raw = path.open("rb")
    except OSError as e:
        raise DisburseError(
            f"cannot read the {message.what}: {e.strerror}",
            file=shown,
            fix="check the path and that the file can be read",
        ) from None
    with raw:
        reader = _HashingReader(raw)
        first = True
        try:
            for _, el in etree.iterparse(
                reader, events=("end",), tag=tags, schema=schema(message), huge_tree=False
            ):
                if first:
                    first = False
                    if el.getroottree().docinfo.doctype:
                        raise DisburseError(
                            f"the {message.what} has a DOCTYPE declaration",
                            file=shown,
                            line=1,
                            fix="bank files carry no DTD; ask the bank for the file as it was "
                            "sent, without a DOCTYPE",
                        )
                yield el
                if el.tag == record:
                    el.clear(keep_tail=True)
                    parent = el.getparent()
                    while parent is not None and el.getprevious() is not None:
                        del parent[0]
        except etree.XMLSyntaxError as e:
            raise _syntax_error(e, path, message, shown) from None
        stream.sha256 = reader.sha256.hexdigest()


_BYTES_REPR = re.compile(r"^line \d+: b(['\"])(.*)\1$")


def _syntax_error(
    e: etree.XMLSyntaxError, path: Path, message: Message, shown: str
) -> DisburseError:
    """A parse or validation failure in the reader's words, with its line."""
    text = e.msg or str(e)
    if e.lineno:  # not well-formed: libxml2 knows the line
        m = _BYTES_REPR.match(text)
        text = m.group(2) if m else text
        text = re.sub(r", line \d+, column \d+$", "", text)
        return DisburseError(
            f"the {message.what} is not well-formed XML: {text}",
            file=shown,
            line=e.lineno,
            fix="the file is damaged or not XML: ask for it again (a transfer cut short "
            "leaves it truncated)",
        )
    found = _root_namespace(path)
    if found != message.namespace:
        got = f"a document in namespace {found!r}" if found else "a document without a namespace"
        other = (
            found.rsplit(":", 1)[-1] if found and found.startswith("urn:iso:std:iso:20022") else ""
        )
        return DisburseError(
            f"the file is {got}, not {message.name}" + (f" (it is {other})" if other else ""),
            file=shown,
            line=1,
            fix=f"disburse reads {message.name}: ask the bank for that version of the file",
        )
    line, located = _locate(path, message)
    return DisburseError(
        f"the {message.what} does not follow the {message.name} schema: " + _plain(located or text),
        file=shown,
        line=line,
        fix=message.fix,
    )


def _plain(libxml_message: str) -> str:
    """A libxml2 schema message without the namespace repeated on every element name, and
    with any long run of digits it quotes (an account number failing a pattern) masked
    to its last 4."""
    text = re.sub(r"\{urn:iso:std:iso:20022:tech:xsd:[a-z0-9.]+\}", "", libxml_message)
    return re.sub(r"\d{5,}(?=\d{4})", lambda m: "*" * len(m.group(0)), text).strip()


def _root_namespace(path: Path) -> str | None:
    """The namespace of the document's first element, or None if it has none or none is read."""
    with contextlib.suppress(etree.XMLSyntaxError, StopIteration, OSError), path.open("rb") as f:
        _, el = next(iter(etree.iterparse(f, events=("start",))))
        return etree.QName(el).namespace
    return None


def _locate(path: Path, message: Message) -> tuple[int | None, str | None]:
    """The line and message of the first schema error, found without the whole tree in
    memory: each record validated on its own, then what is left of the document."""
    record = message.tag(message.record)
    one = record_schema(message)
    with path.open("rb") as f, contextlib.suppress(etree.XMLSyntaxError):
        # well-formed (the first pass said so), so nothing is suppressed but the unforeseen
        it = etree.iterparse(f, events=("end",), tag=record, huge_tree=False)
        for _, el in it:
            if not one.validate(el):
                first = one.error_log[0]
                return first.line or el.sourceline, first.message
            # Keep the first and the latest record of each parent; drop the ones between.
            prev = el.getprevious()
            if prev is not None and prev.tag == record:
                before = prev.getprevious()
                if before is not None and before.tag == record:
                    prev.clear()
                    parent = el.getparent()
                    if parent is not None:
                        parent.remove(prev)
        whole = schema(message)
        if it.root is not None and not whole.validate(it.root.getroottree()):
            first = whole.error_log[0]
            return first.line or None, first.message
    return None, None


@contextlib.contextmanager
def replaced_atomically(target: Path, what: str) -> Iterator[Path]:
    """A temporary file beside `target`, moved onto it (os.replace) when the block ends
    without an error and removed when it raises: a reader never sees half a file, and a
    file that failed its checks is never left under the target's name."""
    folder = target.parent
    if not folder.is_dir():
        raise DisburseError(
            f"cannot write the {what}: the folder {folder} does not exist",
            file=str(target),
            fix="create the folder or choose another target",
        )
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    except OSError as e:
        raise DisburseError(
            f"cannot write the {what} in {folder}: {e.strerror}",
            file=str(target),
            fix="choose a folder you can write to",
        ) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the directory entry too, where the platform allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_failed(what: str, target: Path, e: OSError) -> DisburseError:
    """A DisburseError for an OSError met while writing `what` to `target`."""
    return DisburseError(
        f"cannot write the {what}: {e.strerror or e}",
        file=str(target),
        fix="check the disk has room and the folder can be written to; nothing was "
        "written under the target name",
    )
