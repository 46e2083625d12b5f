"""What expressions mean at the edges, on both the compiled backend and the reference interpreter.

Each row: an expression over a few features, their values (money in fen), and
the value both evaluators must give.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from common.yamlsrc import Located
from eligibility.backends.polars import DEC, Context, compile_expr
from eligibility.checked import FeatureRef, ParamRef, RunDate, Scope
from eligibility.parse import parse_expression
from eligibility.plan import ParamTable
from eligibility.reference import Env, evaluate
from eligibility.typecheck import Checker

TYPES = {
    "paid": "money",
    "due": "money",
    "n": "count",
    "m": "count",
    "rate": "number",
    "born": "date",
    "on": "date",
    "flag": "bool",
    "kind": "text",
}
POLARS = {
    "money": pl.Int64,
    "count": pl.Int64,
    "number": DEC,
    "date": pl.Date,
    "bool": pl.Boolean,
    "text": pl.String,
}
D = Decimal

# Parameters in force: a list of codes, a list of amounts (fen), a table of rates by code.
PARAMS: dict[str, tuple[str, str, Any]] = {
    "sections": ("text", "list", ["H", "O", "R"]),
    "amounts": ("money", "list", [D(150000), D(300000)]),
    "rates": ("number", "table", ParamTable({"3301": D("0.6"), "3302": D("0.5")}, D("0.4"))),
    "strict_rates": ("number", "table", ParamTable({"3301": D("0.6")}, None)),
}

CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("kind in sections", {"kind": "O"}, True),
    ("kind not in sections", {"kind": "O"}, False),
    ("kind in sections", {"kind": None}, None),
    ("paid in amounts", {"paid": 150000}, True),
    ("paid in amounts", {"paid": 150001}, False),
    ("lookup(rates, kind)", {"kind": "3302"}, D("0.5")),
    ("lookup(rates, kind)", {"kind": "9999"}, D("0.4")),  # the default
    ("lookup(rates, kind)", {"kind": None}, None),  # an unknown code is unknown
    ("lookup(strict_rates, kind)", {"kind": "9999"}, None),  # no default: unknown
    ("paid * lookup(rates, kind)", {"paid": 1000, "kind": "3301"}, D(600)),
    ('starts_with(kind, "33")', {"kind": "330106"}, True),
    ('starts_with(kind, "33")', {"kind": "3"}, False),
    ('starts_with(kind, "33")', {"kind": None}, None),
    ("substr(kind, 1, 2)", {"kind": "6510"}, "65"),
    ("substr(kind, 3, 5)", {"kind": "6510"}, "10"),  # past the end: what there is
    ("substr(kind, 9, 2)", {"kind": "6510"}, ""),
    ("substr(kind, 2, 2)", {"kind": "浙江杭州"}, "江杭"),  # characters, not bytes
    ("length(kind)", {"kind": "浙江"}, 2),
    ("length(kind)", {"kind": ""}, 0),
    ('lower(kind) == "ab"', {"kind": "AB"}, True),
    ("upper(kind)", {"kind": "a1b"}, "A1B"),
    ('matches(kind, "6[0-5][0-9]{2}")', {"kind": "6510"}, True),
    ('matches(kind, "6[0-5][0-9]{2}")', {"kind": "65100"}, False),  # anchored: the whole text
    ('matches(kind, "6[0-5][0-9]{2}")', {"kind": "x6510"}, False),
    ('matches(kind, "A|B")', {"kind": "AB"}, False),  # alternation inside the anchors
    ('matches(kind, "\\d{6}")', {"kind": "330106"}, True),
    ("n <= 30", {"n": 30}, True),
    ("n < 30", {"n": 30}, False),
    ("n / m", {"n": 1, "m": 0}, None),  # division by zero is unknown
    ("n / m <= 5.5%", {"n": 11, "m": 200}, True),  # exactly 5.5%
    ("n / m <= 5.5%", {"n": 111, "m": 2000}, False),  # 5.55%
    ("paid * 90%", {"paid": 12345}, D("11110.5")),
    ("paid * 30%", {"paid": 12345}, D("3703.5")),
    ("paid > 0", {"paid": 1}, True),
    ("paid > 5000 yuan", {"paid": 500000}, False),
    ("paid + due", {"paid": None, "due": 5}, None),
    ("flag and n > 1", {"flag": None, "n": 0}, False),  # unknown and false is false
    ("flag or n > 1", {"flag": None, "n": 0}, None),
    ("flag or n > 1", {"flag": None, "n": 2}, True),
    ("not flag", {"flag": None}, None),
    ('kind in ["a", "b"]', {"kind": None}, None),
    ('kind not in ["a", "b"]', {"kind": "c"}, True),
    ("1 yuan if flag else 2 yuan", {"flag": None}, D(200)),
    ("min(paid, 1000 yuan)", {"paid": None}, None),  # unknown stays unknown, never the cap
    ("max(paid, due)", {"paid": 3, "due": 7}, D(7)),
    ("coalesce(paid, 0 yuan)", {"paid": None}, D(0)),
    ("round(rate, 2)", {"rate": D("2.345")}, D("2.35")),  # half up, not half even
    ("round(rate, 2)", {"rate": D("-2.345")}, D("-2.35")),
    ("round(paid)", {"paid": 250}, D(300)),  # money rounds to whole yuan
    ("months_between(born, on)", {"born": dt.date(2024, 1, 31), "on": dt.date(2024, 2, 29)}, 0),
    ("months_between(born, on)", {"born": dt.date(2024, 1, 15), "on": dt.date(2024, 3, 15)}, 2),
    ("months_between(born, on)", {"born": dt.date(2024, 3, 15), "on": dt.date(2024, 1, 20)}, -2),
    ("age_on(on)", {"born": dt.date(2000, 2, 29), "on": dt.date(2021, 2, 28)}, 20),
    ("age_on(on)", {"born": dt.date(2000, 2, 29), "on": dt.date(2021, 3, 1)}, 21),
    ("add_months(born, 1)", {"born": dt.date(2025, 1, 31)}, dt.date(2025, 2, 28)),
    ("add_months(born, -36)", {"born": dt.date(2024, 2, 29)}, dt.date(2021, 2, 28)),
    ("add_days(born, -1)", {"born": dt.date(2025, 3, 1)}, dt.date(2025, 2, 28)),
    ("days_between(born, on)", {"born": dt.date(2025, 3, 1), "on": dt.date(2025, 2, 27)}, -2),
    (
        "year_of(born) == 2025 and month_start(born) == 2025-03-01",
        {"born": dt.date(2025, 3, 9)},
        True,
    ),
    ("is_missing(born)", {"born": None}, True),
    ("0 <= n < 3", {"n": 3}, False),
    ("abs(n - m)", {"n": 2, "m": 5}, 3),
    ("on >= as_of", {"on": dt.date(2026, 1, 1)}, True),
]


def _check(text: str) -> tuple[Any, Checker]:
    names: dict[str, Any] = {n: FeatureRef(n, t) for n, t in TYPES.items()}  # type: ignore[arg-type]
    names["birth_on"] = FeatureRef("born", "date")
    names["as_of"] = RunDate("as_of")
    for name, (t, shape, _value) in PARAMS.items():
        names[name] = ParamRef(name, t, shape)
    scope = Scope("person", names, "test features", relations_from=None)
    checker = Checker(Located("<test>", None), None)
    node = parse_expression(text, "<test>")
    assert checker.check(node, scope) is not None, [p.render() for p in checker.problems]
    return node, checker


@pytest.mark.parametrize(
    ("text", "values", "expected"), CASES, ids=[c[0] + " " + str(c[1]) for c in CASES]
)
def test_both_backends_agree_at_the_edges(text: str, values: dict[str, Any], expected: Any) -> None:
    node, checker = _check(text)
    dates = {"as_of": dt.date(2026, 1, 1)}
    ctx = Context(
        typed=checker.typed,
        column=lambda b: (
            pl.col(b.name).cast(DEC) if b.type in ("money", "number") else pl.col(b.name)
        ),
        aggregate=lambda n: pl.lit(None),
        listed=lambda n: pl.lit(False),
        dates=dates,
        feature=lambda name: pl.col({"birth_on": "born"}[name]),
        params={name: value for name, (_t, _s, value) in PARAMS.items()},
    )
    row = {n: values.get(n) for n in TYPES}
    frame = pl.DataFrame({n: pl.Series([row[n]], dtype=POLARS[TYPES[n]]) for n in TYPES})
    got = frame.select(compile_expr(node, ctx).alias("v")).item()
    env = Env(
        checker.typed,
        {
            **{
                n: (D(v) if TYPES[n] in ("money", "number") and v is not None else v)
                for n, v in row.items()
            },
            "birth_on": row["born"],
        },
        dates=dates,
        params={name: value for name, (_t, _s, value) in PARAMS.items()},
    )
    ref = evaluate(node, env)
    assert ref == expected
    assert got == expected
