"""A synthetic day of events over a synthetic city, for `disburse bench --events`.

What a city's bureaus deliver during a day, as rows of the catalogue's sources:

| share | source | what |
| --- | --- | --- |
| 35% | social_security_monthly | a month of an enterprise corrected (headcount, premiums paid) |
| 15% | tax_monthly | a month of an enterprise's tax corrected |
| 15% | employment | a resident hired by an enterprise this month |
| 5% | graduates | a resident's degree registered |
| 10% | persons + relations | a birth, and the child's parent |
| 10% | enterprises | an enterprise certified high-tech, or its status changed |
| 10% | credit_lists | an entry on a credit list, or one lifted (a removal) |

Values are drawn from the city's own rows, so most events are valid; a few are not
(an enterprise's status drawn from another's, a hire past the person's death) and are
quarantined by the event path, as real ones would be.  Same seed, same events.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from common.identifiers import resident_check_char

Event = tuple[str, str, str]  # source, op, the row as JSON
REGION = "330102"  # where the synthetic city's children are born (one of its regions)
SHARES: list[tuple[float, str]] = [
    (0.35, "social_security_monthly"),
    (0.15, "tax_monthly"),
    (0.15, "employment"),
    (0.05, "graduates"),
    (0.10, "birth"),
    (0.10, "enterprises"),
    (0.10, "credit_lists"),
]


def _read(city: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(city / f"{name}.parquet")


class _Day:
    def __init__(self, city: Path, as_of: dt.date, seed: int) -> None:
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.month = f"{as_of.year:04d}-{as_of.month:02d}"
        self.frames = {
            n: _read(city, n)
            for n in (
                "enterprises",
                "persons",
                "social_security_monthly",
                "tax_monthly",
                "graduates",
                "credit_lists",
                "household_members",
            )
        }
        self.codes = self.frames["enterprises"]["credit_code"].to_list()
        adults = self.frames["persons"].filter(pl.col("birth_on") < "2000-01-01")
        self.adults = adults["person_id"].to_list()
        self.births = 0

    def row(self, name: str) -> dict[str, Any]:
        frame = self.frames[name]
        return frame.row(self.rng.randrange(frame.height), named=True)

    def social_security_monthly(self) -> list[Event]:
        row = self.row("social_security_monthly")
        head = max(0, int(row["insured_headcount"]) + self.rng.randint(-3, 3))
        due = int(row["ui_premium_due_fen"])
        return [
            _e(
                "social_security_monthly",
                {**row, "insured_headcount": head, "ui_premium_paid_fen": due},
            )
        ]

    def tax_monthly(self) -> list[Event]:
        row = self.row("tax_monthly")
        scale = self.rng.choice([0.5, 0.9, 1.1, 2.0])
        return [
            _e(
                "tax_monthly",
                {
                    **row,
                    "revenue_fen": int(row["revenue_fen"] * scale),
                    "tax_paid_fen": int(row["tax_paid_fen"] * scale),
                },
            )
        ]

    def employment(self) -> list[Event]:
        hire = {
            "person_id": self.rng.choice(self.adults),
            "credit_code": self.rng.choice(self.codes),
            "from_month": self.month,
            "to_month": None,
        }
        return [_e("employment", hire)]

    def graduates(self) -> list[Event]:
        level = self.rng.choice(["bachelor", "master", "vocational"])
        on = (self.as_of - dt.timedelta(days=self.rng.randrange(30, 700))).isoformat()
        row = {"person_id": self.rng.choice(self.adults), "graduated_on": on, "level": level}
        return [_e("graduates", row)]

    def birth(self) -> list[Event]:
        member = self.row("household_members")
        parent = member["person_id"]
        born = self.as_of - dt.timedelta(days=self.rng.randrange(1, 30))
        self.births += 1
        body = f"{REGION}{born:%Y%m%d}{self.births % 1000:03d}"
        child = body + resident_check_char(body)
        person = {
            "person_id": child,
            "name": "新生儿",
            "birth_on": born.isoformat(),
            "sex": self.rng.choice("MF"),
            "region_code": REGION,
            "status": "alive",
            "died_on": None,
        }
        link = {
            "person_id": child,
            "related_person_id": parent,
            "relation": "parent",
            "household_id": member["household_id"],
        }
        return [_e("persons", person), _e("relations", link)]

    def enterprises(self) -> list[Event]:
        row = self.row("enterprises")
        if self.rng.random() < 0.6:
            on = (self.as_of - dt.timedelta(days=self.rng.randrange(1, 60))).isoformat()
            return [_e("enterprises", {**row, "is_high_tech": True, "high_tech_certified_on": on})]
        return [_e("enterprises", {**row, "status": self.row("enterprises")["status"]})]

    def credit_lists(self) -> list[Event]:
        if self.rng.random() < 0.3 and self.frames["credit_lists"].height:
            row = self.row("credit_lists")
            key = {k: row[k] for k in ("subject_id", "list", "listed_on")}
            return [_e("credit_lists", key, "remove")]
        on = (self.as_of - dt.timedelta(days=self.rng.randrange(1, 30))).isoformat()
        entry = {
            "subject_id": self.rng.choice(self.codes),
            "list": "tax_violation",
            "listed_on": on,
            "removed_on": None,
        }
        return [_e("credit_lists", entry)]


def _e(source: str, row: dict[str, Any], op: str = "upsert") -> Event:
    text = {
        k: None if v is None else ("true" if v is True else "false" if v is False else str(v))
        for k, v in row.items()
    }
    return source, op, json.dumps(text, ensure_ascii=False)


def day_of_events(city: Path, as_of: dt.date, count: int, seed: int = 1) -> list[Event]:
    """`count` events of a day over the synthetic city in `city` (the shares in the
    module's docstring), in the order they arrive."""
    day = _Day(city, as_of, seed)
    kinds: list[Callable[[], list[Event]]] = [getattr(day, name) for _s, name in SHARES]
    weights = [share for share, _n in SHARES]
    out: list[Event] = []
    while len(out) < count:
        out.extend(day.rng.choices(kinds, weights)[0]())
    return out[:count]
