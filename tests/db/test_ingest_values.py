"""Values ingest must not let through nor choke on: money beyond its bound, whole numbers
beyond 64 bits, a bad value in an optional column; and sums of money that stay exact.

On SQLite and PostgreSQL.  A bad value quarantines its row under a rule; only what cannot
be a row's fault (a required column none of whose values can be read, sums that could
pass 64 bits) stops the ingest, with nothing written.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from disburse.cli import main
from jobs.catalogue import INT64_MAX, Catalogue, load_source_catalogue
from jobs.errors import JobError
from jobs.ingest import IngestResult, ingest
from jobs.staged import scan_staged
from ledgers.schema import QuarantinedRow, Run
from tests import minicity

AS_OF = dt.date(2026, 1, 1)
PREMIUM_BOUND = 100_000_000_000  # max_fen of the premium columns in policies/sources.yaml


def _ingest(data: Path, engine: Engine, store: Path, catalogue: Catalogue | None = None) -> Any:
    cat = catalogue or load_source_catalogue()
    return ingest(data, AS_OF, engine=engine, store=store, catalogue=cat)


def _quarantined(engine: Engine, source: str) -> list[tuple[int, str, str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                QuarantinedRow.row_no,
                QuarantinedRow.column_name,
                QuarantinedRow.rule,
                QuarantinedRow.value,
            )
            .where(QuarantinedRow.source == source)
            .order_by(QuarantinedRow.row_no)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _year_of_premiums(premiums: list[int], dtype: pl.DataType = pl.Int64) -> pl.DataFrame:
    """Twelve months of 2025 of the first enterprise, headcount steady, the premiums given
    (as due and as paid)."""
    cc = minicity.credit_codes(3)[0]
    values = pl.Series(premiums, dtype=dtype)
    return pl.DataFrame(
        {
            "credit_code": [cc] * 12,
            "month": [f"2025-{m:02d}" for m in range(1, 13)],
            "insured_headcount": [12] * 12,
            "ui_premium_due_fen": values,
            "ui_premium_paid_fen": values,
            "ui_new_claimants": [0] * 12,
        }
    )


def test_money_beyond_its_bound_is_quarantined(tmp_path: Path, engine: Engine) -> None:
    """max_fen: the bound itself is accepted, one fen more is money_out_of_range, and so is
    the premium near the 64-bit maximum that once summed to 12.00 yuan."""
    premiums = [PREMIUM_BOUND, PREMIUM_BOUND + 1, 2**62] + [1_000] * 9
    data = minicity.write(
        tmp_path / "data", {"social_security_monthly": _year_of_premiums(premiums)}
    )
    result = _ingest(data, engine, tmp_path / "store")
    assert result.sources["social_security_monthly"].by_rule == {"money_out_of_range": 2}
    assert _quarantined(engine, "social_security_monthly") == [
        (2, "ui_premium_due_fen", "money_out_of_range", str(PREMIUM_BOUND + 1)),
        (3, "ui_premium_due_fen", "money_out_of_range", str(2**62)),
    ]


def test_unsigned_64_bit_values_beyond_the_signed_range_are_quarantined(
    tmp_path: Path, engine: Engine
) -> None:
    """A UInt64 column is read (its values are whole numbers); a value above the Int64
    maximum quarantines its row as integer_out_of_range, the others are staged as Int64."""
    frames = minicity.frames()
    social = frames["social_security_monthly"].with_columns(
        pl.Series("insured_headcount", [2**63 + 5, 3], dtype=pl.UInt64)
    )
    data = minicity.write(tmp_path / "data", {"social_security_monthly": social})
    result = _ingest(data, engine, tmp_path / "store")
    assert result.sources["social_security_monthly"].by_rule == {"integer_out_of_range": 1}
    assert _quarantined(engine, "social_security_monthly") == [
        (1, "insured_headcount", "integer_out_of_range", str(2**63 + 5))
    ]
    staged = scan_staged(Path(result.staged_dir) / "social_security_monthly.parquet").collect()
    assert staged.schema["insured_headcount"] == pl.Int64
    assert staged["insured_headcount"].to_list() == [3]


def test_text_beyond_64_bits_is_out_of_range_and_other_text_not_an_integer(
    tmp_path: Path, engine: Engine
) -> None:
    data = minicity.write(tmp_path / "data", fmt="csv")
    tax = data / "tax_monthly.csv"
    lines = tax.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",99999999999999999999"
    lines[2] = lines[2].rsplit(",", 1)[0] + ",12.50"
    tax.write_text("\n".join(lines) + "\n")
    result = _ingest(data, engine, tmp_path / "store")
    assert result.sources["tax_monthly"].by_rule == {
        "integer_out_of_range": 1,
        "not_an_integer": 1,
    }


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("to_month", "June 2025", "unparseable_month"),  # the column's only value
        ("removed_on", "2024-13-01", "unparseable_date"),
    ],
)
def test_a_bad_value_in_an_optional_column_quarantines_its_row(
    tmp_path: Path, engine: Engine, column: str, value: str, rule: str
) -> None:
    """Even when it is the only value of the column: the row is quarantined, the delivery
    is not refused."""
    frames = minicity.frames()
    source = "employment" if column == "to_month" else "credit_lists"
    frame = frames[source]
    row = frame[column].is_not_null().arg_max()
    assert frame[column].drop_nulls().len() == 1
    spoiled = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )
    data = minicity.write(tmp_path / "data", {source: spoiled}, fmt="csv")
    result: IngestResult = _ingest(data, engine, tmp_path / "store")
    assert result.sources[source].by_rule == {rule: 1}
    assert _quarantined(engine, source) == [(row + 1, column, rule, value)]


def test_a_household_may_be_registered_anywhere_in_a_real_province(
    tmp_path: Path, engine: Engine
) -> None:
    """persons.region_code is the household registration: a division anywhere in China
    (a migrant's home county, another city of the province) is accepted, not only the
    city's districts; a code that names no province or is not six digits is quarantined
    under the pattern's rule, `pattern_mismatch`."""
    codes = ["330106", "510104", "331002", "990101", "3301", "33010X"]
    pid = minicity.person_ids(len(codes))
    persons = pl.DataFrame(
        {
            "person_id": pid,
            "name": ["张三", "李四", "王小五", "赵六", "钱七", "孙八"],
            "birth_on": ["1980-01-01"] * len(codes),
            "sex": ["M", "F", "M", "M", "F", "M"],
            "region_code": codes,
            "status": ["alive", "alive", "deceased", "alive", "alive", "alive"],
            "died_on": [None, None, "2024-03-02", None, None, None],
        }
    )
    assert pid[:3] == minicity.person_ids(3)  # the rows other sources name stay as they were
    data = minicity.write(tmp_path / "data", {"persons": persons})
    result: IngestResult = _ingest(data, engine, tmp_path / "store")
    assert result.sources["persons"].by_rule == {"pattern_mismatch": 3}
    assert result.sources["persons"].accepted == 3
    assert _quarantined(engine, "persons") == [
        (4, "region_code", "pattern_mismatch", "990101"),
        (5, "region_code", "pattern_mismatch", "3301"),
        (6, "region_code", "pattern_mismatch", "33010X"),
    ]


def test_a_required_column_with_no_readable_value_still_stops_the_ingest(
    tmp_path: Path, engine: Engine
) -> None:
    """The wrong column (required, no value readable): refused whole, as before."""
    data = minicity.write(tmp_path / "data")
    frames = minicity.frames()
    frames["persons"].with_columns(pl.lit("not a date").alias("birth_on")).write_parquet(
        data / "persons.parquet"
    )
    with pytest.raises(JobError, match="column 'birth_on' holds no value readable as date"):
        _ingest(data, engine, tmp_path / "store")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 0


# --- sums of money --------------------------------------------------------------------


def _run(data: Path, db_url: str, store: Path) -> dict[str, Any]:
    args = ["run", "--data", str(data), "--as-of", "2026-03-15", "--db", db_url]
    result = CliRunner().invoke(main, [*args, "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def _explained(db_url: str) -> dict[str, Any]:
    args = ["explain", "--db", db_url, "--policy", "job-stabilisation-refund"]
    entity = ["--entity", minicity.credit_codes(3)[0], "--json"]
    result = CliRunner().invoke(main, [*args, *entity])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_premiums_at_their_bound_sum_exactly(tmp_path: Path, db_url: str, engine: Engine) -> None:
    """A year of premiums at the largest amount a row may hold: the feature is their exact
    sum (no row quarantined), and the refund is capped as the policy says."""
    data = minicity.write(
        tmp_path / "data", {"social_security_monthly": _year_of_premiums([PREMIUM_BOUND] * 12)}
    )
    outcome = _run(data, db_url, tmp_path / "store")
    assert outcome["sources"]["social_security_monthly"]["quarantined"] == 0
    explained = _explained(db_url)
    assert int(explained["features"]["ui_premium_paid"]) == 12 * PREMIUM_BOUND
    assert explained["amount_fen"] == 300_000_000  # the cap, 3,000,000 yuan


def test_premiums_near_the_64_bit_maximum_never_sum_to_a_wrapped_value(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    """Four premiums of 2**62 fen and one of 1,200: added in 64 bits they wrap to 1,200 fen
    (the run once paid 7.20 yuan on them).  Now the four are quarantined and the sum is
    that of the rows accepted, exactly."""
    premiums = [2**62] * 4 + [1_200] + [0] * 7
    data = minicity.write(
        tmp_path / "data", {"social_security_monthly": _year_of_premiums(premiums)}
    )
    outcome = _run(data, db_url, tmp_path / "store")
    assert outcome["sources"]["social_security_monthly"]["quarantined"] == 4
    assert [r[2] for r in _quarantined(engine, "social_security_monthly")] == [
        "money_out_of_range"
    ] * 4
    assert int(_explained(db_url)["features"]["ui_premium_paid"]) == 1_200


def _unbounded_premiums() -> Catalogue:
    """The shipped catalogue with the premium columns allowed any Int64 amount."""
    data = load_source_catalogue().model_dump(by_alias=True, exclude_none=True)
    for column in ("ui_premium_due_fen", "ui_premium_paid_fen"):
        data["sources"]["social_security_monthly"]["columns"][column]["max_fen"] = INT64_MAX
    return Catalogue.model_validate(data)


def test_sums_that_could_pass_64_bits_are_refused(tmp_path: Path, engine: Engine) -> None:
    """With a bound too loose to guarantee exact sums (a catalogue allowing any Int64), an
    enterprise whose premiums add up beyond 64 bits stops the ingest with E163, nothing
    written; the same amounts spread one per enterprise pass."""
    premiums = [2**62] * 4 + [0] * 8
    data = minicity.write(
        tmp_path / "data", {"social_security_monthly": _year_of_premiums(premiums)}
    )
    with pytest.raises(JobError) as info:
        _ingest(data, engine, tmp_path / "store", _unbounded_premiums())
    rendered = info.value.render()
    assert "E163 source 'social_security_monthly'" in rendered
    assert (
        "column 'ui_premium_due_fen': the values of one enterprise add up to "
        "18,446,744,073,709,551,616, beyond the 9,223,372,036,854,775,807 that features add "
        "up exactly (each row is within ±9,223,372,036,854,775,807, and one enterprise has "
        "up to 12 rows)"
    ) in rendered
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 0
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []

    spread = minicity.frames()["social_security_monthly"].with_columns(
        pl.lit(2**62).alias("ui_premium_due_fen"), pl.lit(2**62).alias("ui_premium_paid_fen")
    )
    data = minicity.write(tmp_path / "spread", {"social_security_monthly": spread})
    result = _ingest(data, engine, tmp_path / "store", _unbounded_premiums())
    assert result.sources["social_security_monthly"].quarantined == 0


def test_counts_beyond_their_maximum_are_quarantined(tmp_path: Path, engine: Engine) -> None:
    """Counts that features sum carry a maximum too (insured_headcount, ui_new_claimants)."""
    social = minicity.frames()["social_security_monthly"].with_columns(
        pl.Series("ui_new_claimants", [2**62, 1])
    )
    data = minicity.write(tmp_path / "data", {"social_security_monthly": social})
    result = _ingest(data, engine, tmp_path / "store")
    assert result.sources["social_security_monthly"].by_rule == {"above_maximum": 1}


def test_sums_of_an_unbounded_column_are_checked_exactly(tmp_path: Path, engine: Engine) -> None:
    """A column without a bound: its sums per entity are added up in 128 bits at ingest,
    accepted when they fit 64 bits, refused (E163) when they do not."""
    data = load_source_catalogue().model_dump(by_alias=True, exclude_none=True)
    del data["sources"]["social_security_monthly"]["columns"]["ui_new_claimants"]["max"]
    unbounded = Catalogue.model_validate(data)
    year = _year_of_premiums([1_000] * 12)
    fits = year.with_columns(pl.Series("ui_new_claimants", [2**61] * 3 + [0] * 9))
    folder = minicity.write(tmp_path / "fits", {"social_security_monthly": fits})
    result = _ingest(folder, engine, tmp_path / "store", unbounded)
    assert result.sources["social_security_monthly"].quarantined == 0
    wraps = year.with_columns(pl.Series("ui_new_claimants", [2**62] * 2 + [0] * 10))
    folder = minicity.write(tmp_path / "wraps", {"social_security_monthly": wraps})
    with pytest.raises(JobError) as info:
        _ingest(folder, engine, tmp_path / "store", unbounded)
    assert (
        f"E163 source 'social_security_monthly' ({folder}/social_security_monthly.parquet): "
        "column 'ui_new_claimants': the values of one enterprise add up to "
        "9,223,372,036,854,775,808, beyond the 9,223,372,036,854,775,807 that features add "
        "up exactly (the column has no bound, and one enterprise has up to 12 rows)"
    ) in info.value.render()
