"""A strict YAML loader for files people write.

PyYAML silently keeps the last of two equal keys and reads `no`, `off` and `y`
as booleans (the "Norway problem"); both have cost real money in configuration
files.  This loader composes the node tree itself, so it can refuse both, and it
records the line and column of every value so that a validation error can point
at the exact place in the file.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import Code, Problem, ProblemsError

Loc = tuple[str | int, ...]

# YAML 1.1 booleans that are not `true`/`false`: refused, they are almost always
# a word the author meant literally (a country code, an answer in a table).
_AMBIGUOUS_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_STRICT_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _StrictResolver(yaml.resolver.Resolver):
    """The safe resolver, with booleans limited to true/false."""


_StrictResolver.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _StrictResolver.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", _STRICT_BOOL)
    )


class _StrictLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.constructor.SafeConstructor,
    _StrictResolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _StrictResolver.__init__(self)


@dataclass
class Located:
    """A loaded document with the (line, col) of every value, keyed by its path."""

    file: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    text: str = ""
    scalars: dict[Loc, tuple[int, int]] = field(default_factory=dict)  # start, end index in text
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def where(self, loc: Loc, value: str) -> Callable[[int], tuple[int, int]] | None:
        """The file position of each offset of a scalar's `value` (as YAML read it: folded
        over lines, unquoted), or None if the value cannot be matched to its source."""
        span = self.scalars.get(loc)
        if span is None:
            return None
        index = align(value, self.text[span[0] : span[1]])
        if index is None:
            return None
        if not self._line_starts:
            self._line_starts = [0, *(i + 1 for i, c in enumerate(self.text) if c == "\n")]
        starts = self._line_starts

        def at(offset: int) -> tuple[int, int]:
            i = span[0] + index[max(0, min(offset, len(index) - 1))]
            line = bisect.bisect_right(starts, i)
            return line, i - starts[line - 1] + 1

        return at

    def value_at(self, loc: Loc) -> tuple[int, int]:
        """Where the text of a scalar value starts (inside its quotes, if quoted)."""
        probe = loc
        while probe and probe not in self.values:
            probe = probe[:-1]
        line, col = self.values.get(probe) or self.at(loc)
        lines = self.text.splitlines()
        if (
            0 < line <= len(lines)
            and col - 1 < len(lines[line - 1])
            and lines[line - 1][col - 1] in "'\""
        ):
            col += 1
        return line, col

    def at(self, loc: Loc) -> tuple[int, int]:
        """The position of `loc`, or of its nearest ancestor that has one."""
        while loc and loc not in self.positions:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def problem(self, loc: Loc, code: Code, message: str, fix: str) -> Problem:
        """A Problem positioned at `loc` in this file."""
        line, col = self.at(loc)
        return Problem(self.file, line, col, code, message, fix)


def align(value: str, raw: str) -> list[int] | None:
    """For each offset of `value` (and its end), the offset in `raw`, the scalar's source:
    YAML folds a line break and the next line's indentation into one space and drops
    quotes.  None when they do not match (an escape sequence, a block scalar's header)."""
    out: list[int] = []
    j = 1 if raw[:1] in ("'", '"') else 0
    for c in value:
        while j < len(raw) and raw[j] != c and not (c == " " and raw[j] == "\n"):
            if raw[j] not in " \t\r\n|>-+0123456789":
                return None  # something other than layout lies between: do not guess
            j += 1
        if j >= len(raw):
            return None
        out.append(j)
        if c == " " and raw[j] == "\n":
            j += 1
            while j < len(raw) and raw[j] in " \t":
                j += 1
        else:
            j += 1
    out.append(min(j, len(raw)))
    return out


# Limits far past any file a person writes, so that a hostile one is refused before it
# costs the machine: its size, its values after aliases are expanded, its nesting.
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 50_000
MAX_NESTING = 40
# The tags a policy file may carry (all of them implicit: YAML gives them to plain values).
ALLOWED_TAGS = {
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map", "merge")
}
# YAML 1.1 reads these as numbers in another base: 010 is 8, 0o17 is 15, 1:30 is 90.
_OTHER_BASE = re.compile(
    r"^[-+]?(?:0[0-7_]+|0o[0-7_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$"
)


_KINDS = {
    "timestamp": "a calendar date",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
}


# A key of a {...} mapping that is the rest of a value a comma cut: "1) in list", "2)".
_SPLIT_VALUE = re.compile(r"[()\[\]\"']|^\d|\s")


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        self.node, self.message = node, message


def _problem(file: str, mark: Any, code: Code, message: str, fix: str) -> Problem:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return Problem(file, line, col, code, message, fix)


def _position(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of a character index."""
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def load_yaml_text(text: str, file: str) -> Located:
    """Parse one YAML document, refusing what a person did not mean or a file must not do.

    Raises ProblemsError with every problem found: syntax (E001), a key given twice
    (E002), yes/no booleans (E003), a value YAML cannot read or a tag (E005), a file that
    expands past the size of a policy (E006), a number in another base (E007).
    """
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:
        raise ProblemsError([_reader_problem(file, text, exc)]) from None
    try:
        root = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        raise ProblemsError([_reader_problem(file, text, exc)]) from None
    except yaml.MarkedYAMLError as exc:
        what = exc.problem or "is not valid YAML"
        mark = exc.problem_mark or exc.context_mark
        problem = _problem(
            file, mark, Code.YAML_SYNTAX, f"YAML syntax: {what}", "check indentation and quoting"
        )
        raise ProblemsError([problem]) from None
    except RecursionError:
        raise ProblemsError(
            [
                Problem(
                    file,
                    1,
                    1,
                    Code.YAML_TOO_LARGE,
                    "the file nests too deeply to be read",
                    "a policy nests a few levels deep: check the brackets",
                )
            ]
        ) from None
    finally:
        loader.dispose()
    out = Located(file, None, text=text)
    problems: list[Problem] = []
    if root is not None:
        builder = _Builder(loader, out, problems)
        try:
            out.data = builder.build(root, (), 0)
        except _TooLarge as exc:
            fix = "a policy file has no need of such sizes; write the values out, without aliases"
            problems.append(
                _problem(file, exc.node.start_mark, Code.YAML_TOO_LARGE, exc.message, fix)
            )
    if problems:
        raise ProblemsError(problems)
    return out


def _reader_problem(file: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    line, col = _position(text, exc.position)
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return Problem(
        file,
        line,
        col,
        Code.YAML_SYNTAX,
        f"character U+{ord(char):04X} is not allowed in a YAML file (a control character)",
        "delete it: save the file as plain UTF-8 text",
    )


def load_yaml_file(path: Path) -> Located:
    """Read and parse a YAML file a person wrote (see load_yaml_text)."""
    name = str(path)

    def unreadable(
        message: str, fix: str, line: int = 1, col: int = 1, code: Code = Code.FILE_UNREADABLE
    ) -> ProblemsError:
        return ProblemsError([Problem(name, line, col, code, message, fix)])

    try:
        if path.is_dir():
            raise unreadable(
                "is a folder, not a file", "give a policy file, or the folder holding policy files"
            )
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise unreadable(
                f"the file has {size:,} bytes, more than the {MAX_FILE_BYTES:,} a policy file may have",
                "a policy file is a page or two of text: check that this is the right file",
                code=Code.YAML_TOO_LARGE,
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise unreadable("file not found", "check the path") from None
    except OSError as exc:
        raise unreadable(
            f"cannot be read: {exc.strerror}", "check the path and its permissions"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        line, col = _position(good, len(good))
        raise unreadable(
            f"not UTF-8 text: byte 0x{data[exc.start]:02X} cannot be read ({exc.reason})",
            "save the file as UTF-8 (from GBK: iconv -f GBK -t UTF-8 FILE > NEW)",
            line,
            col,
        ) from None
    return load_yaml_text(text.removeprefix("\ufeff"), name)


class _Builder:
    """Plain Python values from the composed node tree, with the position of each, refusing
    what `load_yaml_text` refuses; aliases are counted as often as they are expanded."""

    def __init__(self, loader: _StrictLoader, out: Located, problems: list[Problem]) -> None:
        self.loader, self.out, self.problems = loader, out, problems
        self.values = 0

    def problem(self, node: yaml.Node, code: Code, message: str, fix: str) -> None:
        self.problems.append(_problem(self.out.file, node.start_mark, code, message, fix))

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooLarge(
                node, f"the file expands to more than {MAX_VALUES:,} values (through aliases)"
            )
        if depth > MAX_NESTING:
            raise _TooLarge(node, f"the file nests more than {MAX_NESTING} levels deep")
        out = self.out
        out.positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        out.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in ALLOWED_TAGS:
            self.problem(
                node,
                Code.YAML_VALUE,
                f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed in this file",
                "write the plain value, without a tag",
            )
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, loc)

    def _mapping(self, node: yaml.MappingNode, loc: Loc, depth: int) -> Any:
        out = self.out
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self.problem(
                node,
                Code.YAML_VALUE,
                f"a merge (<<) {exc.problem}",
                "merge only mappings, or write the keys out",
            )
            return {}
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in ALLOWED_TAGS:
                self.problem(
                    key_node,
                    Code.YAML_SYNTAX,
                    "a key must be a plain value",
                    "write the key as a plain word",
                )
                continue
            key = self._scalar(key_node, (*loc, "<key>"), key=True)
            cut = isinstance(value_node, yaml.ScalarNode) and value_node.value == ""
            if node.flow_style and cut and _SPLIT_VALUE.search(str(key)):
                self.problem(
                    key_node,
                    Code.YAML_SYNTAX,
                    f"{key!r} is read as a key: inside {{...}} a comma ends a value",
                    'quote a value that has commas, as in {id: x, when: "min(a, b) > 0"}',
                )
                continue
            if key in result:
                first = out.positions.get((*loc, key), (0, 0))[0]
                self.problem(
                    key_node,
                    Code.DUPLICATE_KEY,
                    f"duplicate key {key!r} (first given on line {first})",
                    "keep one of them: YAML would silently use the last",
                )
                continue
            key_at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out.positions[(*loc, key)] = key_at
            result[key] = self.build(value_node, (*loc, key), depth + 1)
            out.positions[(*loc, key)] = key_at
        return result

    def _scalar(self, node: yaml.ScalarNode, loc: Loc, *, key: bool = False) -> Any:
        self.out.scalars[loc] = (node.start_mark.index, node.end_mark.index)
        plain = node.style is None and not key  # a key is read as written
        if plain and _AMBIGUOUS_BOOL.match(node.value):
            self.problem(
                node,
                Code.AMBIGUOUS_BOOL,
                f"{node.value!r} is ambiguous: YAML 1.1 reads it as a boolean",
                f'write true or false, or quote it ("{node.value}") if you mean the word',
            )
            return node.value
        if plain and node.tag == "tag:yaml.org,2002:int" and _OTHER_BASE.match(node.value):
            self.problem(
                node,
                Code.AMBIGUOUS_NUMBER,
                f"{node.value!r} is ambiguous: YAML 1.1 reads it as a number in base 8 or 60",
                f'write the number in decimal, or quote it ("{node.value}") if you mean the text',
            )
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError, yaml.MarkedYAMLError):
            kind = node.tag.rsplit(":", 1)[-1]
            what = _KINDS.get(kind, f"a {kind}")
            fix = (
                "write a real date as YYYY-MM-DD"
                if kind == "timestamp"
                else "write the plain value"
            )
            self.problem(node, Code.YAML_VALUE, f"{node.value!r} is not {what}", fix)
            return node.value


# Parts of a pydantic error location that name a validator or a union branch, not a key.
_NOT_KEYS = {
    "str",
    "int",
    "float",
    "bool",
    "date",
    "decimal",
    "none",
    "PayeeRelation",
    "literal['self']",
}


class At(ValueError):
    """A model validator's error about one place inside the model (`loc`, relative to it),
    with its own fix if it has one: `schema_problems` positions it there rather than at the
    model's first key."""

    def __init__(self, loc: Loc, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.loc = loc
        self.fix = fix


def schema_problems(
    located: Located,
    exc: Any,
    *,
    codes: tuple[Code, Code, Code],
    unknown_key_fix: Callable[[Loc], str],
    format_hint: str,
) -> list[Problem]:
    """Pydantic validation errors as positioned problems: unknown key, missing key, bad value.

    `exc` is a pydantic ValidationError; `codes` are the three codes in that order.
    The same place can fail several union branches: one problem per place and code.
    """
    unknown, missing, bad = codes
    out: list[Problem] = []
    for err in exc.errors():
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and (p.startswith("function-") or p in _NOT_KEYS))
        )
        error = err.get("ctx", {}).get("error")
        if isinstance(error, At):
            loc = (*loc, *error.loc)
        if err["type"] == "extra_forbidden":
            out.append(
                located.problem(loc, unknown, f"unknown key {loc[-1]!r}", unknown_key_fix(loc))
            )
        elif err["type"] == "missing":
            out.append(
                located.problem(loc[:-1], missing, f"missing key {loc[-1]!r}", f"add {loc[-1]}:")
            )
        elif err["type"] == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            out.append(
                located.problem(
                    loc, bad, f"{err['input']!r} is not allowed here", f"use one of {expected}"
                )
            )
        else:
            fix = error.fix if isinstance(error, At) and error.fix else format_hint
            out.append(located.problem(loc, bad, err["msg"].removeprefix("Value error, "), fix))
    seen: set[tuple[int, int, str]] = set()
    unique = []
    for p in out:
        if (p.line, p.col, p.code) not in seen:
            seen.add((p.line, p.col, p.code))
            unique.append(p)
    return unique
