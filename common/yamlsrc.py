"""A strict YAML loader for files people write.

PyYAML silently keeps the last of two equal keys and reads `no`, `off` and `y`
as booleans (the "Norway problem"); both have cost real money in configuration
files.  This loader composes the node tree itself, so it can refuse both, and it
records the line and column of every value so that a validation error can point
at the exact place in the file.
"""

from __future__ import annotations

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

    def problem(self, loc: Loc, code: Code, message: str, fix: str = "") -> Problem:
        """A Problem positioned at `loc` in this file."""
        line, col = self.at(loc)
        return Problem(self.file, line, col, code, message, fix)


def load_yaml_text(text: str, file: str) -> Located:
    """Parse one YAML document, refusing duplicate keys and yes/no booleans.

    Raises ProblemsError with every such problem found (E001 syntax, E002
    duplicate key, E003 ambiguous boolean).
    """
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "is not valid YAML"
        raise ProblemsError(
            [
                Problem(
                    file,
                    line,
                    col,
                    Code.YAML_SYNTAX,
                    f"YAML syntax: {what}",
                    "check indentation and quoting",
                )
            ]
        ) from None
    finally:
        loader.dispose()
    out = Located(file, None, text=text)
    problems: list[Problem] = []
    if root is not None:
        out.data = _build(loader, root, (), out, problems)
    if problems:
        raise ProblemsError(problems)
    return out


def load_yaml_file(path: Path) -> Located:
    """Read and parse a YAML file a person wrote (see load_yaml_text)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProblemsError(
            [Problem(str(path), 1, 1, Code.FILE_UNREADABLE, "file not found", "check the path")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ProblemsError(
            [
                Problem(
                    str(path),
                    1,
                    1,
                    Code.FILE_UNREADABLE,
                    f"not UTF-8 text ({exc.reason})",
                    "save as UTF-8",
                )
            ]
        ) from None
    return load_yaml_text(text, str(path))


def _build(
    loader: _StrictLoader, node: yaml.Node, loc: Loc, out: Located, problems: list[Problem]
) -> Any:
    out.positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    out.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(
                    Problem(out.file, line, col, Code.YAML_SYNTAX, "a key must be a plain value")
                )
                continue
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                first = out.positions.get((*loc, key), (0, 0))[0]
                problems.append(
                    Problem(
                        out.file,
                        line,
                        col,
                        Code.DUPLICATE_KEY,
                        f"duplicate key {key!r} (first given on line {first})",
                        "keep one of them: YAML would silently use the last",
                    )
                )
                continue
            out.positions[(*loc, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            result[key] = _build(loader, value_node, (*loc, key), out, problems)
            out.positions[(*loc, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*loc, i), out, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if node.style is None and _AMBIGUOUS_BOOL.match(node.value):
        problems.append(
            Problem(
                out.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                Code.AMBIGUOUS_BOOL,
                f"{node.value!r} is ambiguous: YAML 1.1 reads it as a boolean",
                f'write true or false, or quote it ("{node.value}") if you mean the word',
            )
        )
        return node.value
    return loader.construct_object(node, deep=True)


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
            out.append(
                located.problem(loc, bad, err["msg"].removeprefix("Value error, "), format_hint)
            )
    seen: set[tuple[int, int, str]] = set()
    unique = []
    for p in out:
        if (p.line, p.col, p.code) not in seen:
            seen.add((p.line, p.col, p.code))
            unique.append(p)
    return unique
