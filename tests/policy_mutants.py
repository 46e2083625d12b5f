"""Broken copies of the shipped policy files, as an outside tester makes them.

`mutants(seed, n)` yields (name, bytes) pairs: each a shipped policy file with one
mistake a person makes (a stray character in an expression, a misspelt name, an
impossible date, an odd value, a line lost or doubled, a bad byte) or one hostile
construct (YAML tags and aliases, nesting and sizes past any real policy).  Seeded:
the same seed gives the same files, so a failure reproduces.

`check(name, data)` runs `disburse policy check`'s library call on one of them and
says how it ended: passed, refused (every problem positioned, with a fix), or broken
(a traceback, a problem without a position or fix), with the seconds it took.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eligibility.policyset import policy_files

ROOT = Path(__file__).resolve().parents[1]
POLICIES = policy_files([ROOT / "policies"])

STRAYS = [
    *list("=;@#$!`\\\"'()[],%{}&|?^~<>:*"),
    "=>=",
    "==",
    "=<",
    "&&",
    "||",
    "\t",
    "\u3000",
    "（",
    "）",
    "，",
]
ODD_VALUES = [
    ".inf",
    "-.inf",
    ".nan",
    "1e40",
    "-1",
    "0",
    "010",
    "0o17",
    "0x1F",
    "1:30",
    "1_000_000",
    '"abc"',
    "abc",
    "~",
    "null",
    "[]",
    "{}",
    "[1, 2]",
    "{a: 1}",
    "99999999999999999999999",
    "-99999999999999999999999",
    "9223372036854775808",
    "1.5",
    "50",
    "150%",
    "-5%",
    "0.001 fen",
    "-100 yuan",
    "1e40 yuan",
    "!!python/name:os.system",
    '!!int "abc"',
    "!!binary aGVsbG8=",
    "!custom tag",
    "*undefined",
    "2026-02-30",
    "0001-01-01",
    "9999-12-31",
    "2026-13-01",
    "yes",
    "no",
    "on",
    "true",
    "'2026-01-01'",
    '"2026-01-01"',
    "1 yuan 2",
    "NaN yuan",
]
DATES = [
    "2026-02-30",
    "0001-01-01",
    "0",
    "9999-12-31",
    "2026-00-10",
    "1970-01-01",
    "2026-1-1",
    "20260101",
]
BYTES = [b"\x00", b"\x07", b"\x1b", b"\xff", b"\xc3\x28", b"\xe4\xb8", b"\r", b"\x85"]
EXPRESSION_KEYS = re.compile(
    r"^(\s*(?:- )?(?:\{?\s*id: [^,]+, )?(?:when|amount|formula|by|from|to|rate|cap|where|rank_by|otherwise|[a-z_]+):\s*)(.+)$"
)


@dataclass(frozen=True)
class Outcome:
    """How checking one broken file ended."""

    name: str
    status: str  # passed | refused | broken
    seconds: float
    detail: str = ""


def mutants(seed: int, n: int) -> Iterator[tuple[str, bytes]]:
    """`n` broken copies of the shipped policies, the same for the same seed."""
    rng = random.Random(seed)
    sources = [(p.stem, p.read_text(encoding="utf-8")) for p in POLICIES]
    operators = [op for op, weight in OPERATORS for _ in range(weight)]
    for i in range(n):
        stem, text = rng.choice(sources)
        op = rng.choice(operators)
        yield f"{i:05d}-{stem}-{op.__name__.lstrip('_')}", op(rng, text)


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _expression_line(rng: random.Random, lines: list[str]) -> int:
    candidates = [
        i
        for i, line in enumerate(lines)
        if EXPRESSION_KEYS.match(line) and not line.lstrip().startswith("#")
    ]
    return rng.choice(candidates) if candidates else rng.randrange(len(lines))


def _stray(rng: random.Random, text: str) -> bytes:
    lines = _lines(text)
    i = _expression_line(rng, lines)
    m = EXPRESSION_KEYS.match(lines[i])
    start = len(m.group(1)) if m else 0
    at = rng.randint(start, len(lines[i]))
    lines[i] = lines[i][:at] + rng.choice(STRAYS) + lines[i][at:]
    return "\n".join(lines).encode()


def _operator(rng: random.Random, text: str) -> bytes:
    swaps = [
        (">=", "=>="),
        ("==", "="),
        (" and ", " ; "),
        (" and ", " an "),
        ("<=", "=<"),
        (" or ", " || "),
        ("(", "(("),
        (")", ""),
        ('"', ""),
        (" not ", " ! "),
        ("%", "%%"),
        (" yuan", " yaun"),
        ("*", "**"),
    ]
    a, b = rng.choice([s for s in swaps if s[0] in text] or swaps)
    spots = [m.start() for m in re.finditer(re.escape(a), text)]
    if not spots:
        return text.encode()
    at = rng.choice(spots)
    return (text[:at] + b + text[at + len(a) :]).encode()


def _misspell(rng: random.Random, text: str) -> bytes:
    words = list(re.finditer(r"\b[a-z][a-z_]{3,}\b", text))
    m = rng.choice(words)
    w = m.group()
    k = rng.randrange(len(w) - 1)
    w2 = rng.choice([w[:k] + w[k + 1 :], w[:k] + w[k + 1] + w[k] + w[k + 2 :], w + "s", w.upper()])
    return (text[: m.start()] + w2 + text[m.end() :]).encode()


def _date(rng: random.Random, text: str) -> bytes:
    spots = list(re.finditer(r"\b\d{4}-\d{2}-\d{2}\b", text))
    if not spots:
        return _value(rng, text)
    m = rng.choice(spots)
    return (text[: m.start()] + rng.choice(DATES) + text[m.end() :]).encode()


def _value(rng: random.Random, text: str) -> bytes:
    spots = list(re.finditer(r"(?<=: )[^\n{}\[\],#]+", text))
    m = rng.choice(spots)
    return (text[: m.start()] + rng.choice(ODD_VALUES) + text[m.end() :]).encode()


def _line(rng: random.Random, text: str) -> bytes:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    choice = rng.randrange(4)
    if choice == 0:
        del lines[i]
    elif choice == 1:
        lines.insert(i, lines[i])
    elif choice == 2:
        lines[i] = "  " + lines[i]
    else:
        lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i] + ":"
    return "\n".join(lines).encode()


def _byte(rng: random.Random, text: str) -> bytes:
    data = text.encode()
    at = rng.randrange(len(data))
    return data[:at] + rng.choice(BYTES) + data[at:]


def _truncate(rng: random.Random, text: str) -> bytes:
    data = text.encode()
    return data[: rng.randrange(len(data))]


def _nesting(rng: random.Random, text: str) -> bytes:
    lines = _lines(text)
    i = _expression_line(rng, lines)
    m = EXPRESSION_KEYS.match(lines[i])
    if not m:
        return text.encode()
    depth = rng.choice([60, 110, 300, 1000])
    lines[i] = (
        m.group(1)
        + "(" * depth
        + m.group(2).rstrip("}").rstrip()
        + ")" * depth
        + ("}" if m.group(2).rstrip().endswith("}") else "")
    )
    return "\n".join(lines).encode()


def _long_sum(rng: random.Random, text: str) -> bytes:
    n = rng.choice([64, 200, 500, 2000])
    kind = rng.randrange(4)
    if kind == 0:  # a long sum in the amount
        extra = "\nlet:\n  big: " + " + ".join(["1 yuan"] * n) + "\n"
    elif kind == 1:  # a long and-chain
        extra = "\nlet:\n  many: " + " and ".join(['status == "active"'] * n) + "\n"
    elif kind == 2:  # chained lets
        extra = "\nlet:\n  l0: 1\n" + "".join(f"  l{k + 1}: l{k} + 1\n" for k in range(n))
    else:  # many conditions
        body = "".join(f"  - {{id: c{k}, when: 1 == 1}}\n" for k in range(n))
        return re.sub(r"^eligible:\n", "eligible:\n" + body, text, count=1, flags=re.M).encode()
    if "\nlet:\n" in text:
        extra = extra.replace("\nlet:\n", "\n")
        return re.sub(r"^let:\n", "let:\n" + extra.lstrip("\n"), text, count=1, flags=re.M).encode()
    return (text.rstrip("\n") + "\n" + extra.lstrip("\n")).encode()


def _yaml_bomb(rng: random.Random, text: str) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        for k in range(1, 9):
            bomb += f"{chr(97 + k)}: &{chr(97 + k)} [" + ",".join([f"*{chr(96 + k)}"] * 10) + "]\n"
        return (
            text + "\nnotes_bomb:\n" + "".join("  " + line + "\n" for line in bomb.splitlines())
        ).encode()
    if kind == 1:
        return (text + "\nx: !!python/object/apply:os.system ['true']\n").encode()
    if kind == 2:
        return (text + "\n<<: 5\n").encode()
    rows = rng.choice([300, 1000])
    table = "amount:\n  table:\n" + "".join(
        f"    - {{when: headcount_end >= {k}, amount: {k} yuan}}\n" for k in range(rows)
    )
    return re.sub(r"^amount:.*?(?=^[a-z])", table, text, count=1, flags=re.M | re.S).encode()


OPERATORS: list[tuple[Callable[[random.Random, str], bytes], int]] = [
    (_stray, 6),
    (_operator, 5),
    (_misspell, 5),
    (_date, 3),
    (_value, 6),
    (_line, 4),
    (_byte, 2),
    (_truncate, 2),
    (_nesting, 2),
    (_long_sum, 2),
    (_yaml_bomb, 2),
]


def check(name: str, data: bytes, catalogue: object, folder: Path | None = None) -> Outcome:
    """Check one broken file as `disburse policy check` does; how it ended."""
    from common.errors import DisburseError
    from eligibility import check_files
    from jobs.policies import checked_scenarios

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_bytes(data)
        started = time.perf_counter()
        try:
            # As `policy check`: the scenarios too, on their scratch ledgers.
            report = check_files([path], catalogue, checked_scenarios)  # type: ignore[arg-type]
        except DisburseError as exc:
            return Outcome(
                name, "broken", time.perf_counter() - started, f"raised, not reported: {exc}"
            )
        except BaseException as exc:
            detail = "".join(traceback.format_exception(exc))[-2000:]
            return Outcome(name, "broken", time.perf_counter() - started, detail)
        seconds = time.perf_counter() - started
        lines = data.count(b"\n") + 1
        for p in report.problems:
            if not (p.file == str(path) and 1 <= p.line <= lines + 1 and p.col >= 1):
                return Outcome(name, "broken", seconds, f"badly positioned: {p.render()}")
            if not p.fix:
                return Outcome(name, "broken", seconds, f"no fix: {p.render()}")
        if report.problems or not report.ok:
            return Outcome(name, "refused", seconds)
        return Outcome(name, "passed", seconds)


def run(seed: int, count: int, seconds: float, out: Path) -> None:
    """Check `count` mutants (and evaluate those that pass over a small city), one JSON line
    each to `out`; a mutant that takes over `seconds` of CPU (or ten times that of the
    clock) is stopped and reported as a hang."""
    import datetime as dt
    import json
    import signal

    from disburse.synth import generate
    from eligibility import PolicySet, load_policy
    from jobs.catalogue import load_source_catalogue
    from jobs.evaluate import evaluate
    from jobs.ingest import stage
    from jobs.policies import load_policies

    class Hang(Exception):
        pass

    def stop(*_: object) -> None:
        raise Hang

    # A hang is `seconds` of this process's CPU time (a loop), or ten times that of the
    # clock's (a wait): a machine busy with other work does not make a mutant a hang.
    signal.signal(signal.SIGALRM, stop)
    signal.signal(signal.SIGPROF, stop)
    sources = load_source_catalogue()
    cat = load_policies(sources).catalogue
    work = Path(tempfile.mkdtemp(prefix="mutants-"))
    generate(work / "data", enterprises=60, persons=300, seed=3, errors=0.0)
    staged = work / "staged"
    stage(work / "data", staged, catalogue=sources)
    with out.open("w") as fh:
        for name, data in mutants(seed, count):
            signal.setitimer(signal.ITIMER_PROF, seconds)
            signal.setitimer(signal.ITIMER_REAL, 10 * seconds)
            try:
                outcome = check(name, data, cat, work)
                if outcome.status == "passed":
                    path = work / f"{name}.yaml"
                    path.write_bytes(data)
                    policy = load_policy(path, cat)
                    day: dt.date = policy.spec.valid.from_
                    evaluate(staged, PolicySet(cat, [policy]), day)
            except Hang:
                outcome = Outcome(name, "hang", seconds, f"stopped after {seconds} s")
            except BaseException as exc:
                detail = "".join(traceback.format_exception(exc))[-2000:]
                outcome = Outcome(name, "broken", 0.0, f"passed the check, then: {detail}")
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.setitimer(signal.ITIMER_REAL, 0)
            fh.write(json.dumps(outcome.__dict__) + "\n")
            fh.flush()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Check broken copies of the shipped policies.")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run(args.seed, args.count, args.seconds, args.out)
