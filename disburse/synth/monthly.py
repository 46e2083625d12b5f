"""Monthly tax and social security per enterprise, and the yearly tax ratings.

Both monthly sources have one row per enterprise and month in which it was
open (from its registration month if that falls in the window, until its
closing month if it closed in the window), ordered by enterprise then month.
Headcount follows a trajectory per firm: most keep their staff, about 10% shed
(a third of them heavily) and about 15% hire; unemployment insurance premiums
follow headcount times the firm's wage base, and new benefit claimants follow
the drops in headcount.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from disburse.synth import _tables as T
from disburse.synth._calendar import month_text, spring_festival_month
from disburse.synth._context import BoolArray, Context, FloatArray, IntArray, draw
from disburse.synth.enterprises import (
    COMPANY,
    INDIVIDUAL,
    NONPROFIT_FORMS,
    UNCLASSIFIED,
    Enterprises,
)

STABLE, SHED, HIRE = 0, 1, 2
TRAJECTORY_SHARE = (0.75, 0.10, 0.15)
HEAVY_SHED_SHARE = 0.35
ARREARS_SHARE = 0.03
TAX_VIOLATOR_SHARE = 0.003


@dataclass(slots=True)
class Monthly:
    """The two monthly frames, plus per-enterprise facts later sources draw on."""

    tax: pl.DataFrame
    social_security: pl.DataFrame
    row_enterprise: IntArray  # enterprise index of each monthly row (empty with a sink)
    headcount_start: IntArray  # insured in the first window month (0 if not open)
    headcount_end: IntArray  # insured in the last window month (0 if not open)
    change_month: IntArray  # absolute month a shedding firm starts to shed
    arrears: BoolArray  # has months with unpaid premiums
    tax_violator: BoolArray


def _seasons(ctx: Context) -> tuple[FloatArray, FloatArray, IntArray]:
    """Revenue and headcount factors per window month, and the July count (wage bases)."""
    w = ctx.window
    months = np.arange(w.first_month, w.last_month + 1)
    revenue = np.array([T.REVENUE_SEASON[m % 12] for m in months])
    headcount = np.ones(months.shape[0])
    for i, m in enumerate(months):
        year, cal = divmod(int(m), 12)
        if cal + 1 == spring_festival_month(year):
            revenue[i] = T.SPRING_FESTIVAL_REVENUE
            headcount[i] = T.SPRING_FESTIVAL_HEADCOUNT
    # Social insurance bases are reset each July to the previous year's wages.
    julys = np.cumsum((months % 12 == 6) & (months > w.first_month))
    return revenue, headcount, julys


# Firms per block of the (firm, month) grids: a block's arrays stay a few
# megabytes, so the allocator reuses their memory from block to block instead
# of mapping (and faulting in) fresh pages for every temporary of a city.
BLOCK = 1 << 16


@dataclass(slots=True)
class _Firms:
    """Per-firm parameters of the monthly model (one element per firm open in the window)."""

    first: IntArray  # first and last open month, as window offsets
    last: IntArray
    headcount: IntArray
    kind: IntArray
    heavy: BoolArray
    ratio: npt.NDArray[np.float32]
    change: IntArray
    ramp: npt.NDArray[np.float32]
    born: npt.NDArray[np.float32]
    close: npt.NDArray[np.float32]
    premium: IntArray  # per head and base year, in thousandths of a fen
    arrears: BoolArray
    arrears_start: IntArray
    arrears_end: IntArray
    half_paid: BoolArray
    revenue0_fen: FloatArray
    revenue_growth: npt.NDArray[np.float32]
    sigma: npt.NDArray[np.float32]
    small_scale: BoolArray
    vat: FloatArray
    cit: FloatArray
    nonprofit: BoolArray
    zero_filer: BoolArray
    p_zero_month: npt.NDArray[np.float32]

    def block(self, sl: slice) -> _Firms:
        """The parameters of the firms in a slice."""
        return _Firms(**{name: getattr(self, name)[sl] for name in self.__slots__})


def _firms(ctx: Context, rng: np.random.Generator, ent: Enterprises, firms: IntArray) -> _Firms:
    w = ctx.window
    n = int(firms.shape[0])
    f32 = np.float32
    size, form = ent.size[firms], ent.form[firms]
    headcount0 = ent.headcount[firms]
    first = np.maximum(ent.registered_month[firms], w.first_month) - w.first_month

    kind = draw(rng, TRAJECTORY_SHARE, n)
    heavy = rng.random(n) < HEAVY_SHED_SHARE
    ratio = np.ones(n, dtype=f32)
    shed_ratio = np.where(heavy, rng.uniform(0.3, 0.7, n), rng.uniform(0.8, 0.96, n))
    ratio[kind == SHED] = shed_ratio[kind == SHED]
    ratio[kind == HIRE] = rng.uniform(1.05, 1.6, int((kind == HIRE).sum()))
    change = rng.integers(0, w.months, n)  # window month the change starts
    ramp = np.where(heavy, rng.integers(1, 3, n), rng.integers(1, 7, n)).astype(f32)

    # The wage base moves each July, so it takes one value per firm and base year.
    _, _, julys = _seasons(ctx)
    lo, hi = T.WAGE_BASE_YUAN
    wage = np.clip(rng.lognormal(np.log(T.WAGE_BASE_MEDIAN_YUAN), 0.45, n), lo, hi)
    wage = np.where(size == 3, np.maximum(wage, 6_000), wage)
    growth = rng.uniform(0.02, 0.07, n)
    base_years = np.arange(int(julys.max()) + 1)
    base_fen = np.rint(
        np.minimum(wage[:, None] * (1.0 + growth[:, None] * base_years[None, :]), hi) * 100
    ).astype(np.int64)

    # Some firms fall into arrears for a stretch of months: nothing paid, or half.
    p_arrears = np.where((kind == SHED) & heavy, 0.15, ARREARS_SHARE)
    arrears = (rng.random(n) < p_arrears) & (headcount0 > 0)
    arrears_start = rng.integers(0, w.months, n)
    arrears_end = arrears_start + rng.integers(1, 13, n)
    half_paid = rng.random(n) >= 0.6

    median = np.array(T.REVENUE_MEDIAN_YUAN, dtype=np.float64)[size]
    median = np.where(form == INDIVIDUAL, median * 0.5, median)
    nonprofit = np.isin(form, NONPROFIT_FORMS)
    median = np.where(nonprofit, median * 0.3, median)
    revenue0_fen = median * rng.lognormal(0.0, 0.9, n) * 100.0
    revenue_growth = rng.normal(0.04, 0.12, n).astype(f32)
    small_scale = (size == 0) | (size == UNCLASSIFIED) | (form == INDIVIDUAL)
    small_scale |= (size == 1) & (rng.random(n) < 0.6)
    vat = np.where(small_scale, 0.01, rng.uniform(0.01, 0.04, n))
    profitable = rng.random(n) < 0.65
    cit = np.where(small_scale, rng.uniform(0.0, 0.006, n), rng.uniform(0.002, 0.02, n))
    cit = np.where(profitable & ~nonprofit & (form != INDIVIDUAL), cit, 0.0)
    zero_filer = rng.random(n) < np.where(size == 0, 0.2, np.where(size == 1, 0.05, 0.0))
    p_zero_month = np.where(size == 0, 0.08, np.where(size == 1, 0.02, 0.0)).astype(f32)

    return _Firms(
        first=first,
        last=np.minimum(ent.closed_month[firms], w.last_month) - w.first_month,
        headcount=headcount0,
        kind=kind,
        heavy=heavy,
        ratio=ratio,
        change=change,
        ramp=ramp,
        # Firms registered inside the window start at 40% of their staff and
        # grow; firms that close wind down over their last months.
        born=np.where(ent.registered_month[firms] >= w.first_month, first, -100).astype(f32),
        close=(np.minimum(ent.closed_month[firms], 10**6) - w.first_month).astype(f32),
        premium=base_fen * T.UI_EMPLOYER_RATE_PER_MILLE,
        arrears=arrears,
        arrears_start=arrears_start,
        arrears_end=arrears_end,
        half_paid=half_paid,
        revenue0_fen=revenue0_fen,
        revenue_growth=revenue_growth,
        sigma=np.where(form == INDIVIDUAL, 0.05, 0.18).astype(f32),
        small_scale=small_scale,
        vat=vat,
        cit=cit,
        nonprofit=nonprofit,
        zero_filer=zero_filer,
        p_zero_month=p_zero_month,
    )


def _grid(ctx: Context, rng: np.random.Generator, f: _Firms) -> dict[str, np.ndarray]:
    """One block of firms: the (firm, month) grids, then their open cells, firm-major."""
    w = ctx.window
    width = w.months
    f32 = np.float32
    n = int(f.first.shape[0])
    revenue_season, headcount_season, julys = _seasons(ctx)
    t = np.arange(width, dtype=np.int64)[None, :]
    open_cell = (t >= f.first[:, None]) & (t <= f.last[:, None])

    tf = np.arange(width, dtype=f32)[None, :]
    level = tf - f.change.astype(f32)[:, None]
    level += 1
    level /= f.ramp[:, None]
    np.clip(level, 0, 1, out=level)
    level *= (f.ratio - 1)[:, None]
    level += 1
    factor = tf - f.born[:, None]
    factor *= f32(0.1)
    factor += f32(0.4)
    np.clip(factor, 0.4, 1.0, out=factor)
    level *= factor
    np.subtract(f.close[:, None], tf, out=factor)
    factor += 1
    factor /= 4
    np.clip(factor, 0.25, 1.0, out=factor)
    level *= factor

    x = level * f.headcount.astype(f32)[:, None]
    seasonal = np.flatnonzero(f.headcount >= 10)
    x[seasonal] *= headcount_season.astype(f32)[None, :]
    u = rng.random((n, width), dtype=f32)
    # Stochastic rounding keeps small firms on whole numbers; larger firms also
    # move by a percent or so from month to month (ordinary turnover).
    larger = np.flatnonzero(f.headcount >= 30)
    x[larger] *= 1 + f32(0.02) * (u[larger] - f32(0.5))
    x += u
    headcount = x.astype(np.int32)  # x >= 0: truncation is floor
    headcount *= open_cell

    # Unemployment insurance: headcount times the premium of the base year.
    due = np.empty((n, width), dtype=np.int64)
    for year in range(f.premium.shape[1]):  # a base year's months are contiguous columns
        cols = np.flatnonzero(julys == year)
        a, b = int(cols[0]), int(cols[-1]) + 1
        np.multiply(headcount[:, a:b], f.premium[:, year : year + 1], out=due[:, a:b])
    due += 500
    due //= 1000
    paid = due.copy()
    rows = np.flatnonzero(f.arrears)
    owed = due[rows]
    behind = (t >= f.arrears_start[rows, None]) & (t < f.arrears_end[rows, None])
    paid[rows] = np.where(behind, np.where(f.half_paid[rows, None], owed // 2, 0), owed)
    arrears = f.arrears.copy()
    arrears[rows] = (behind & (owed > 0) & open_cell[rows]).any(axis=1)

    # New claimants: about half of those who left when headcount fell, plus a
    # trickle of ordinary turnover in months with 30 or more staff.  Closed
    # months hold zero, so nobody leaves before the first open month.
    claimants = np.zeros((n, width), dtype=np.int32)
    drop = np.maximum(headcount[:, :-1] - headcount[:, 1:], 0)
    dropped = np.nonzero(drop)
    claimants[dropped[0], dropped[1] + 1] = rng.binomial(drop[dropped], 0.5)
    staff = headcount[larger]
    claimants[larger] += rng.poisson(staff * 0.0006 * (staff >= 30)).astype(np.int32)

    # Revenue: the firm's level, season, growth trend and staff, with noise.  In float64:
    # float32 exp and power are the CPU's own vector code, whose last bit differs from
    # one CPU to another, and a floor of millions of fen moved with it (the same seed
    # wrote another tax_monthly on another machine).  A float64 bit is 2**29 times
    # finer: a fen moves about once in ten million cells.
    noise = rng.standard_normal((n, width), dtype=f32).astype(np.float64)
    noise *= f.sigma[:, None]
    np.exp(noise, out=noise)
    noise *= revenue_season[None, :]
    trend = f.revenue_growth[:, None] * (tf / 12)
    trend += 1
    np.maximum(trend, 0.2, out=trend)
    noise *= trend
    noise *= np.power(level, 0.8, dtype=np.float64)  # revenue follows staff
    noise *= f.revenue0_fen[:, None]
    revenue_fen = np.floor(noise).astype(np.int64)
    revenue_fen[f.zero_filer] = 0
    quiet = np.flatnonzero(f.p_zero_month > 0)
    revenue_fen[quiet] *= (
        rng.random((quiet.shape[0], width), dtype=f32) >= f.p_zero_month[quiet, None]
    )
    # Small-scale taxpayers owe no VAT on monthly sales under 100,000 yuan
    # (announcement 2023 No. 1); corporate income tax is prepaid quarterly.
    taxed = ~f.small_scale[:, None] | (revenue_fen >= 10_000_000)
    tax = np.multiply(revenue_fen, f.vat[:, None], dtype=np.float64)
    tax *= taxed
    quarter_end = np.flatnonzero((w.first_month + np.arange(width)) % 3 == 2)
    tax[:, quarter_end] += revenue_fen[:, quarter_end] * (3.0 * f.cit)[:, None]
    tax[f.nonprofit] = 0.0

    return {
        "month": np.broadcast_to(np.arange(width, dtype=np.uint8), (n, width))[open_cell],
        "count": open_cell.sum(axis=1),
        "tax_paid_fen": tax.astype(np.int64)[open_cell],  # tax >= 0: truncation is floor
        "revenue_fen": revenue_fen[open_cell],
        "insured_headcount": headcount[open_cell],
        "ui_premium_due_fen": due[open_cell],
        "ui_premium_paid_fen": paid[open_cell],
        "ui_new_claimants": claimants[open_cell],
        "headcount_start": headcount[:, 0],
        "headcount_end": headcount[:, -1],
        "arrears": arrears,
    }


# The two frames of a block of firms, handed to a sink as they are made.
Sink = Callable[[pl.DataFrame, pl.DataFrame], None]
TAX_MONEY = ("tax_paid_fen", "revenue_fen")
SS_MONEY = ("insured_headcount", "ui_premium_due_fen", "ui_premium_paid_fen", "ui_new_claimants")


def build_monthly(ctx: Context, ent: Enterprises, sink: Sink | None = None) -> Monthly:
    """tax_monthly and social_security_monthly for the whole window.

    Per-firm parameters are drawn for all firms at once; the months are then
    computed block by block on dense (firm, month) grids, per-firm values
    broadcast along rows and per-month ones along columns, in float32 where
    money is not at stake.  Open months come out firm-major.

    With `sink`, each block's two frames go to it as they are made and the
    returned frames are empty: a city's months are never all held at once (at 3
    million enterprises they were 9 GB).  Without, they are concatenated.  The
    rows are the same either way.
    """
    rng = ctx.rng("monthly")
    w = ctx.window
    first = np.maximum(ent.registered_month, w.first_month)
    last = np.minimum(ent.closed_month, w.last_month)
    firms = np.flatnonzero(last >= first)  # open at some time in the window
    params = _firms(ctx, rng, ent, firms)
    month_table = pl.Series(
        "month", [month_text(w.first_month + k) for k in range(w.months)], dtype=pl.String
    )
    headcount_start = np.zeros(ent.n, dtype=np.int64)
    headcount_end = np.zeros(ent.n, dtype=np.int64)
    arrears = np.zeros(ent.n, dtype=bool)
    row_firm: list[IntArray] = []
    taxes: list[pl.DataFrame] = []
    insured: list[pl.DataFrame] = []
    for lo in range(0, max(firms.shape[0], 1), BLOCK):
        block = _grid(ctx, rng, params.block(slice(lo, lo + BLOCK)))
        here = firms[lo : lo + BLOCK]
        headcount_start[here] = block["headcount_start"]
        headcount_end[here] = block["headcount_end"]
        arrears[here] = block["arrears"]
        rows = np.repeat(here, block["count"])
        if sink is None:  # only spoiling rows (which needs the frames whole) asks for it
            row_firm.append(rows)
        month = month_table.gather(pl.Series(block["month"]))
        code = ent.code.gather(pl.Series(rows, dtype=pl.UInt32))
        tax = pl.DataFrame([code, month, *(pl.Series(k, block[k]) for k in TAX_MONEY)])
        social_security = pl.DataFrame([code, month, *(pl.Series(k, block[k]) for k in SS_MONEY)])
        if sink is not None:
            sink(tax, social_security)
        else:
            taxes.append(tax)
            insured.append(social_security)

    change_month = np.full(ent.n, w.first_month, dtype=np.int64)
    change_month[firms] = w.first_month + params.change
    tax_violator = (ctx.rng("tax_violators").random(ent.n) < TAX_VIOLATOR_SHARE) & (
        ent.form == COMPANY
    )
    return Monthly(
        tax=pl.concat(taxes) if taxes else pl.DataFrame(),
        social_security=pl.concat(insured) if insured else pl.DataFrame(),
        row_enterprise=np.concatenate(row_firm) if row_firm else np.empty(0, dtype=np.int64),
        headcount_start=headcount_start,
        headcount_end=headcount_end,
        change_month=change_month,
        arrears=arrears,
        tax_violator=tax_violator,
    )


def build_tax_ratings(
    ctx: Context, ent: Enterprises, monthly: Monthly
) -> tuple[pl.DataFrame, IntArray]:
    """One rating per enterprise open in each rated year; returns the frame and enterprise indices."""
    rng = ctx.rng("tax_ratings")
    n = ent.n
    # A and B dominate (the tax bureau rates about nine in ten A or B); M is
    # for new or inactive taxpayers; C and D are rare, D for tax violators.
    share = (0.25, 0.64, 0.04, 0.045, 0.025)
    base = draw(rng, share, n)
    firms: list[IntArray] = []
    years: list[IntArray] = []
    ratings: list[IntArray] = []
    for year in ctx.window.rating_years():
        # A firm closed during the year is still rated for it.
        open_in_year = (ent.registered_month <= year * 12 + 11) & (ent.closed_month >= year * 12)
        rating = np.where(rng.random(n) < 0.15, draw(rng, share, n), base)
        # A taxpayer registered during the year has no full year to rate: M.
        rating = np.where(ent.registered_month > year * 12, 2, rating)
        rating = np.where(monthly.tax_violator, 4, rating)
        idx = np.flatnonzero(open_in_year)
        firms.append(idx)
        years.append(np.full(idx.shape[0], year, dtype=np.int64))
        ratings.append(rating[idx])
    firm = np.concatenate(firms) if firms else np.empty(0, np.int64)
    year_col = np.concatenate(years) if years else np.empty(0, np.int64)
    rating_col = np.concatenate(ratings) if ratings else np.empty(0, np.int64)
    order = np.lexsort((year_col, firm))
    firm, year_col, rating_col = firm[order], year_col[order], rating_col[order]
    frame = pl.DataFrame(
        [
            ent.code.gather(pl.Series(firm, dtype=pl.UInt32)),
            pl.Series("year", year_col, dtype=pl.Int32),
            pl.Series("rating", list(T.TAX_RATINGS), dtype=pl.String)
            .gather(pl.Series(rating_col, dtype=pl.UInt32))
            .alias("rating"),
        ]
    )
    return frame, firm
