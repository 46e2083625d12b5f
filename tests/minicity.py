"""A tiny, hand-written city: a few valid rows per source, built from the real identifier code.

Tests change one thing in it (a file, a column, a value) and look at what ingest does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from common.identifiers import ascii_rows_to_series, resident_id_bytes, uscc_bytes


def credit_codes(n: int, seed: int = 0) -> list[str]:
    """`n` valid credit codes of companies registered in Xihu district (330106)."""
    rng = np.random.default_rng(seed)
    first = np.zeros((n, 17), dtype=np.int64)
    first[:, 0], first[:, 1] = 9, 1
    first[:, 2:8] = [3, 3, 0, 1, 0, 6]
    first[:, 8:17] = rng.integers(0, 10, (n, 9))
    return ascii_rows_to_series("c", uscc_bytes(first)).to_list()


def person_ids(n: int, seed: int = 0) -> list[str]:
    """`n` valid identity numbers of people born on 1980-01-01 in Xihu district."""
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 17), dtype=np.int64)
    digits[:, :14] = [3, 3, 0, 1, 0, 6, 1, 9, 8, 0, 0, 1, 0, 1]
    digits[:, 14:17] = rng.integers(0, 10, (n, 3))
    return ascii_rows_to_series("p", resident_id_bytes(digits)).to_list()


def frames() -> dict[str, pl.DataFrame]:
    """Three enterprises and three persons, every source non-empty and every row valid."""
    cc, pid = credit_codes(3), person_ids(3)
    s = pl.String
    return {
        "enterprises": pl.DataFrame(
            {
                "credit_code": cc,
                "name": ["甲科技有限公司", "乙商贸有限公司", "丙餐饮店"],
                "region_code": ["330106", "330108", "330106"],
                "industry_code": ["C3911", None, "H62"],
                "size_class": ["micro", "small", None],
                "legal_form": ["company", "company", "individual_business"],
                "registered_on": ["2010-01-01", "2020-02-28", "2011-05-01"],
                "status": ["active", "active", "revoked"],
                "is_high_tech": [True, False, False],
                "high_tech_certified_on": ["2021-01-01", None, None],
            },
            schema_overrides={"industry_code": s, "size_class": s, "high_tech_certified_on": s},
        ),
        "enterprise_accounts": pl.DataFrame(
            {
                "credit_code": cc[:2],
                "bank_code": ["102", "105"],
                "account_no": ["1202020209000012345", "33050161623500000123"],
                "account_name": ["甲科技有限公司", "乙商贸有限公司"],
            }
        ),
        "enterprise_si_accounts": pl.DataFrame(
            {
                "credit_code": [cc[0]],
                "bank_code": ["105"],
                "account_no": ["33001616270059000888"],
                "account_name": ["甲科技有限公司"],
            }
        ),
        "tax_monthly": pl.DataFrame(
            {
                "credit_code": [cc[0], cc[0], cc[1]],
                "month": ["2025-01", "2025-02", "2025-01"],
                "tax_paid_fen": [120_000, 95_000, 0],
                "revenue_fen": [5_000_000, 4_100_000, 10_000],
            }
        ),
        "tax_ratings": pl.DataFrame(
            {"credit_code": cc[:2], "year": [2025, 2025], "rating": ["A", "M"]}
        ),
        "social_security_monthly": pl.DataFrame(
            {
                "credit_code": [cc[0], cc[1]],
                "month": ["2025-01", "2025-01"],
                "insured_headcount": [12, 3],
                "ui_premium_due_fen": [30_000, 7_500],
                "ui_premium_paid_fen": [30_000, 0],
                "ui_new_claimants": [0, 1],
            }
        ),
        "persons": pl.DataFrame(
            {
                "person_id": pid,
                "name": ["张三", "李四", "王小五"],
                "birth_on": ["1980-01-01"] * 3,
                "sex": ["M", "F", "M"],
                "region_code": ["330106"] * 3,
                "status": ["alive", "alive", "deceased"],
                "died_on": [None, None, "2024-03-02"],
            },
            schema_overrides={"died_on": s},
        ),
        "relations": pl.DataFrame(
            {
                "person_id": [pid[0]],
                "related_person_id": [pid[1]],
                "relation": ["spouse"],
                "household_id": ["H0000000001"],
            }
        ),
        "households": pl.DataFrame({"household_id": ["H0000000001"], "region_code": ["330106"]}),
        "household_members": pl.DataFrame(
            {
                "person_id": [pid[0], pid[1]],
                "household_id": ["H0000000001"] * 2,
                "role": ["head", "member"],
            }
        ),
        "employment": pl.DataFrame(
            {
                "person_id": [pid[0], pid[1]],
                "credit_code": [cc[0], credit_codes(1, seed=9)[0]],
                "from_month": ["2024-01", "2023-07"],
                "to_month": [None, "2025-06"],
            },
            schema_overrides={"to_month": s},
        ),
        "graduates": pl.DataFrame(
            {"person_id": [pid[0]], "graduated_on": ["2024-06-30"], "level": ["bachelor"]}
        ),
        "person_accounts": pl.DataFrame(
            {
                "person_id": [pid[0], pid[1]],
                "bank_code": ["102", "402"],
                "account_no": ["6222020200112233445", "6228480012345678"],
            }
        ),
        "credit_lists": pl.DataFrame(
            {
                "subject_id": [cc[2], pid[1], credit_codes(1, seed=5)[0]],
                "list": ["serious_dishonesty", "wage_arrears", "tax_violation"],
                "listed_on": ["2024-01-01", "2023-05-01", "2022-02-02"],
                "removed_on": [None, "2024-05-01", None],
            },
            schema_overrides={"removed_on": s},
        ),
    }


def write(
    folder: Path, overrides: dict[str, pl.DataFrame] | None = None, fmt: str = "parquet"
) -> Path:
    """Write the mini city into `folder`, with some frames replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in {**frames(), **(overrides or {})}.items():
        if fmt == "csv":
            df.write_csv(folder / f"{name}.csv")
        else:
            df.write_parquet(folder / f"{name}.parquet")
    return folder
