"""Credit lists (信用中国): enterprises and persons under joint sanctions.

About 1% of enterprises and of adults are listed.  Tax violators go on the
tax_violation list and firms in arrears with social insurance often on
social_insurance_arrears; the rest are spread over the lists by share.  About a
third of listings have been lifted (removed_on set).  A few rows name subjects
registered outside the city.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from disburse.synth import _tables as T
from disburse.synth._calendar import date_strings
from disburse.synth._context import Context, IntArray, draw
from disburse.synth._ids import assign_sequence, resident_ids
from disburse.synth.careers import Outside
from disburse.synth.enterprises import Enterprises
from disburse.synth.monthly import Monthly
from disburse.synth.population import YEAR, Population

REMOVED_SHARE = 0.35
SECOND_LIST_SHARE = 0.1


@dataclass(slots=True)
class CreditLists:
    """The credit_lists frame and the local subjects it names."""

    frame: pl.DataFrame
    enterprises: IntArray
    persons: IntArray


def _listing_days(rng: np.random.Generator, earliest: IntArray, today: int) -> IntArray:
    # Listings of the last five years, never before the subject could be listed.
    lo = np.clip(earliest, today - 5 * 365, today).astype(np.int64)
    days: IntArray = lo + np.floor(rng.random(lo.shape[0]) * (today - lo + 1)).astype(np.int64)
    return days


def _second_list(rng: np.random.Generator, first: IntArray, n_lists: int) -> IntArray:
    return (first + 1 + rng.integers(0, n_lists - 1, first.shape[0])) % n_lists


def build_credit_lists(
    ctx: Context, ent: Enterprises, monthly: Monthly, pop: Population, outside: Outside
) -> CreditLists:
    """Listings of local enterprises and persons, and of some outside subjects."""
    rng = ctx.rng("credit_lists")
    today = ctx.window.today
    lists = list(T.ENTERPRISE_LISTS) + [x for x in T.PERSON_LISTS if x not in T.ENTERPRISE_LISTS]
    e_list = {name: i for i, name in enumerate(lists)}

    # Enterprises: violators and some arrears firms on their lists, others at random.
    violators = monthly.tax_violator
    in_arrears = monthly.arrears & ~violators & (rng.random(ent.n) < 0.3)
    planned = int(violators.sum()) + int(in_arrears.sum())
    extra_share = max(T.LISTED_SHARE - planned / max(ent.n, 1), 0.0)
    random_pick = ~violators & ~in_arrears & (rng.random(ent.n) < extra_share)
    e_first = np.full(ent.n, -1, dtype=np.int64)
    e_first[violators] = e_list["tax_violation"]
    e_first[in_arrears] = e_list["social_insurance_arrears"]
    e_first[random_pick] = draw(rng, T.ENTERPRISE_LIST_SHARE, int(random_pick.sum()))
    firms = np.flatnonzero(e_first >= 0)
    second = firms[rng.random(firms.shape[0]) < SECOND_LIST_SHARE]
    e_subject = np.concatenate([firms, second])
    e_lists = np.concatenate(
        [e_first[firms], _second_list(rng, e_first[second], len(T.ENTERPRISE_LISTS))]
    )
    e_day = _listing_days(rng, ent.registered_day[e_subject] + 90, today)

    # Persons: about 1% of the register, all alive adults (20 and over), on the person lists.
    p_list_index = np.array([lists.index(x) for x in T.PERSON_LISTS])
    eligible = pop.alive & (pop.age >= 20)
    share = min(T.LISTED_SHARE * pop.n / max(int(eligible.sum()), 1), 1.0)  # of all persons
    adults = np.flatnonzero(eligible & (rng.random(pop.n) < share))
    p_first = draw(rng, T.PERSON_LIST_SHARE, adults.shape[0])
    p_second_who = rng.random(adults.shape[0]) < SECOND_LIST_SHARE
    p_subject = np.concatenate([adults, adults[p_second_who]])
    p_lists = p_list_index[
        np.concatenate([p_first, _second_list(rng, p_first[p_second_who], len(T.PERSON_LISTS))])
    ]
    p_day = _listing_days(rng, pop.birth_day[p_subject] + np.int64(np.ceil(18 * YEAR)), today)

    # Outside subjects: enterprises from the outside pool and persons born elsewhere.
    local_rows = e_subject.shape[0] + p_subject.shape[0]
    k_out = max(2, round(local_rows * T.OUTSIDE_LISTED_SHARE))
    k_firms = k_out // 2
    k_people = k_out - k_firms
    o_firm = rng.choice(outside.n, size=min(k_firms, outside.n), replace=False)
    o_firm_list = draw(rng, T.ENTERPRISE_LIST_SHARE, o_firm.shape[0])
    o_regions = [r for r in T.OUTSIDE_REGIONS if r not in set(ctx.region_codes)]
    digits = np.array([[int(c) for c in r] for r in o_regions], dtype=np.int64)
    o_region = rng.integers(0, len(o_regions), k_people)
    o_birth = today - np.floor(rng.uniform(22, 70, k_people) * YEAR).astype(np.int64)
    o_male = rng.random(k_people) < 0.6
    o_ids = resident_ids(
        "subject_id", digits, o_region, o_birth, assign_sequence(o_region, o_birth, o_male)
    )
    o_person_list = p_list_index[draw(rng, T.PERSON_LIST_SHARE, k_people)]
    o_day = _listing_days(
        rng, np.full(o_firm.shape[0] + k_people, today - 5 * 365, dtype=np.int64), today
    )

    subject = pl.concat(
        [
            ent.code.gather(pl.Series(e_subject, dtype=pl.UInt32)).alias("subject_id"),
            pop.person_id.gather(pl.Series(p_subject, dtype=pl.UInt32)).alias("subject_id"),
            outside.code.gather(pl.Series(o_firm, dtype=pl.UInt32)).alias("subject_id"),
            o_ids,
        ]
    )
    list_index = np.concatenate([e_lists, p_lists, o_firm_list, o_person_list])
    listed = np.concatenate([e_day, p_day, o_day])
    removed = listed + rng.integers(30, 3 * 365, listed.shape[0])
    is_removed = (rng.random(listed.shape[0]) < REMOVED_SHARE) & (removed <= today)
    frame = pl.DataFrame(
        [
            subject,
            pl.Series("list", lists, dtype=pl.String).gather(
                pl.Series(list_index, dtype=pl.UInt32)
            ),
            date_strings("listed_on", listed),
            date_strings("removed_on", removed, is_removed),
        ]
    ).sort(["listed_on", "subject_id", "list"])
    return CreditLists(frame=frame, enterprises=e_subject, persons=p_subject)
