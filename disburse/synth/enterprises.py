"""The enterprise register and the enterprises' bank accounts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from disburse.synth import _tables as T
from disburse.synth._calendar import date_strings, day_number, month_of_days
from disburse.synth._context import (
    BoolArray,
    Context,
    IntArray,
    draw,
    log_uniform,
    scramble,
)
from disburse.synth._ids import credit_codes
from disburse.synth._text import (
    ascii_series,
    digit_rows,
    join,
    pick,
    take_in_order,
)

# Indices into T.LEGAL_FORMS, named where the code treats a form specially.
COMPANY, INDIVIDUAL = 0, 1
NONPROFIT_FORMS = (5, 6, 7, 10)  # social organisation, foundation, private non-enterprise, public
UNCLASSIFIED = len(T.SIZE_CLASSES)  # size index of an enterprise without a size class
ACTIVE = 0
OPEN = 10**7  # closed_month of an enterprise that is still open


@dataclass(slots=True)
class Enterprises:
    """The register as arrays (one element per enterprise) plus its text columns."""

    code: pl.Series
    name: pl.Series
    region: IntArray
    form: IntArray
    size: IntArray  # index into T.SIZE_CLASSES, UNCLASSIFIED when empty
    status: IntArray
    registered_day: IntArray
    registered_month: IntArray
    closed_month: IntArray  # last month with activity; OPEN while active
    section: IntArray  # index into T.SECTIONS
    headcount: IntArray  # insured employees in normal times
    high_tech_day: IntArray  # -1 when not high-tech
    frame: pl.DataFrame

    @property
    def n(self) -> int:
        """Number of enterprises."""
        return int(self.form.shape[0])


def _ages_in_days(rng: np.random.Generator, form: IntArray, max_days: int) -> IntArray:
    # Registrations have grown steadily for decades (the register roughly
    # doubled 2015-2023), so ages are exponential; individual businesses turn
    # over fastest, civil-society bodies and public institutions are oldest.
    scale_years = np.full(form.shape[0], 8.0)
    scale_years[form == INDIVIDUAL] = 5.0
    scale_years[np.isin(form, (5, 6, 10))] = 15.0
    scale_years[np.isin(form, (8, 9))] = 12.0
    days = np.floor(rng.exponential(scale_years * 365.25)).astype(np.int64)
    too_old = days > max_days
    days[too_old] = rng.integers(0, max_days + 1, int(too_old.sum()))
    return days


def _sections(rng: np.random.Generator, form: IntArray) -> tuple[IntArray, pl.Series]:
    """Industry section per enterprise and the GB/T 4754 industry code column."""
    n = form.shape[0]
    company_share = [T.SECTION_SHARE_COMPANY.get(s, 0.0) for s in T.SECTIONS]
    individual_share = [T.SECTION_SHARE_INDIVIDUAL.get(s, 0.0) for s in T.SECTIONS]
    section = np.where(
        form == INDIVIDUAL, draw(rng, individual_share, n), draw(rng, company_share, n)
    )
    lo = np.array([T.SECTION_DIVISIONS[s][0] for s in T.SECTIONS], dtype=np.int64)
    hi = np.array([T.SECTION_DIVISIONS[s][1] for s in T.SECTIONS], dtype=np.int64)
    division = lo[section] + np.floor(rng.random(n) * (hi[section] - lo[section] + 1)).astype(
        np.int64
    )
    group = 1 + draw(rng, (0.4, 0.3, 0.15, 0.1, 0.05), n)
    klass = draw(rng, (0.15, 0.4, 0.25, 0.12, 0.08), n)
    rows = np.empty((n, 5), dtype=np.uint8)
    letters = np.frombuffer("".join(T.SECTIONS).encode(), dtype=np.uint8)
    rows[:, 0] = letters[section]
    rows[:, 1:] = digit_rows(division * 100 + group * 10 + klass, 4)
    # Forms with a fixed industry (law firms, foundations, ...) take it from the table.
    for f, codes in T.FIXED_INDUSTRY.items():
        members = np.flatnonzero(form == T.LEGAL_FORMS.index(f))
        if members.size == 0:
            continue
        table = np.frombuffer("".join(codes).encode(), dtype=np.uint8).reshape(len(codes), 5)
        choice = rng.integers(0, len(codes), members.size)
        rows[members] = table[choice]
        section[members] = np.searchsorted(letters, table[choice, 0])
    # About 1% of market subjects have no industry recorded (the column is optional).
    valid = (rng.random(n) >= 0.01) | np.isin(
        form, [T.LEGAL_FORMS.index(f) for f in T.FIXED_INDUSTRY]
    )
    return section, ascii_series("industry_code", rows, valid)


class _Namer:
    """Builds names for a subset of rows from word tables (one Polars gather per word)."""

    def __init__(self, rng: np.random.Generator, ctx: Context, region: IntArray, section: IntArray):
        self.rng = rng
        self.region = region
        self.section = section
        self.n = region.shape[0]
        self.districts = list(ctx.region_names)
        # The district without its 区/县/市 suffix, as trade names use it ("西湖").
        self.stems = [d[:-1] if len(d) > 2 and d[-1] in "区县市" else d for d in self.districts]

    def chance(self, share: float) -> BoolArray | None:
        if share >= 1.0:
            return None
        return np.asarray(self.rng.random(self.n) < share, dtype=bool)

    def words(self, table: str | tuple[str, ...], share: float = 1.0) -> pl.Series:
        idx = self.rng.integers(0, len(table), self.n)
        return pick("w", list(table), idx, self.chance(share))

    def district(self, share: float = 1.0) -> pl.Series:
        return pick("w", self.districts, self.region, self.chance(share))

    def stem(self, share: float) -> pl.Series:
        return pick("w", self.stems, self.region, self.chance(share))

    def brand(self) -> list[pl.Series]:
        return [self.words(T.BRAND), self.words(T.BRAND)]

    def industry(self) -> pl.Series:
        flat: list[str] = []
        start, count = [], []
        for s in T.SECTIONS:
            start.append(len(flat))
            count.append(len(T.INDUSTRY_WORDS[s]))
            flat.extend(T.INDUSTRY_WORDS[s])
        st, ct = np.array(start), np.array(count)
        idx = st[self.section] + np.floor(self.rng.random(self.n) * ct[self.section]).astype(int)
        return pick("w", flat, idx)

    def either(self, first: str, second: str, p_second: float) -> pl.Series:
        second_one = np.asarray(self.rng.random(self.n) < p_second, dtype=np.int64)
        return pick("w", [first, second], second_one)


def _names(
    rng: np.random.Generator,
    ctx: Context,
    form: IntArray,
    region: IntArray,
    section: IntArray,
    size: IntArray,
) -> pl.Series:
    """Registered names, composed per legal form the way the registry words them."""
    pieces: list[tuple[IntArray, pl.Series]] = []
    parts: list[pl.Series | str]
    for f, form_name in enumerate(T.LEGAL_FORMS):
        members = np.flatnonzero(form == f)
        if members.size == 0:
            continue
        w = _Namer(rng, ctx, region[members], section[members])
        large = size[members] == 3
        if form_name == "company":
            joint_stock = np.where(large, 0.3, 0.02)
            suffix = pick(
                "w",
                ["有限公司", "股份有限公司"],
                (rng.random(members.size) < joint_stock).astype(int),
            )
            parts = [w.stem(0.4), *w.brand(), w.industry(), suffix]
        elif form_name == "individual_business":
            parts = [w.district(0.6), *w.brand(), w.words(T.SHOP_WORDS)]
        elif form_name == "partnership":
            parts = [w.stem(0.3), *w.brand(), w.industry(), "合伙企业（有限合伙）"]
        elif form_name == "sole_proprietorship":
            parts = [w.stem(0.3), *w.brand(), w.industry(), "商行（个人独资）"]
        elif form_name == "farmer_cooperative":
            parts = [w.district(), *w.brand(), w.words(T.COOPERATIVE_WORDS), "专业合作社"]
        elif form_name == "social_organisation":
            parts = [w.district(), w.words(T.ASSOCIATION_WORDS)]
        elif form_name == "foundation":
            parts = [w.stem(1.0), *w.brand(), w.words(T.FOUNDATION_WORDS)]
        elif form_name == "private_non_enterprise":
            parts = [w.district(), *w.brand(), w.words(T.NON_ENTERPRISE_WORDS)]
        elif form_name == "law_firm":
            parts = [w.stem(0.5), *w.brand(), "律师事务所"]
        elif form_name == "accounting_firm":
            parts = [
                w.stem(0.3),
                *w.brand(),
                w.either("会计师事务所（普通合伙）", "会计师事务所有限公司", 0.4),
            ]
        elif form_name == "public_institution":
            parts = [w.district(), w.words(T.INSTITUTION_WORDS)]
        else:  # branch
            parts = [*w.brand(), w.industry(), "有限公司", w.district(), "分公司"]
        pieces.append((members, join("name", parts)))
    return take_in_order(pieces, form.shape[0], "name")


def build_enterprises(ctx: Context, n: int) -> Enterprises:
    """The enterprise register: n market subjects with valid, unique credit codes."""
    rng = ctx.rng("enterprises")
    window = ctx.window
    form = draw(rng, T.LEGAL_FORM_SHARE, n)
    region = draw(rng, ctx.region_weights, n)

    individual_share = [*T.SIZE_SHARE_INDIVIDUAL, 1 - sum(T.SIZE_SHARE_INDIVIDUAL)]
    other_share = [*T.SIZE_SHARE_OTHER, 1 - sum(T.SIZE_SHARE_OTHER)]
    size = draw(rng, other_share, n)
    individual = np.flatnonzero(form == INDIVIDUAL)
    size[individual] = draw(rng, individual_share, individual.shape[0])

    earliest = day_number(dt.date(1979, 1, 1))
    age = _ages_in_days(rng, form, window.today - earliest)
    registered_day = window.today - age
    registered_month = month_of_days(registered_day)

    # Revoked and deregistered subjects closed at some month of their life,
    # which may fall inside the window (then they have data until then).
    status = draw(rng, T.STATUS_SHARE, n)
    life = window.last_month - registered_month - 3
    status[life < 0] = ACTIVE
    closed_month = np.full(n, OPEN, dtype=np.int64)
    shut = status != ACTIVE
    closed_month[shut] = (
        registered_month[shut] + 3 + np.floor(rng.random(int(shut.sum())) * (life[shut] + 1))
    ).astype(np.int64)

    section, industry = _sections(rng, form)

    # Insured headcount in normal times, by size class; many individual
    # businesses and micro firms insure nobody.
    lo = np.array([r[0] for r in T.HEADCOUNT_RANGE], dtype=np.float64)[size]
    hi = np.array([r[1] for r in T.HEADCOUNT_RANGE], dtype=np.float64)[size]
    headcount = log_uniform(rng, lo, hi)
    headcount[form == INDIVIDUAL] = np.minimum(headcount[form == INDIVIDUAL], 5)
    none_insured = np.where(form == INDIVIDUAL, 0.7, np.where(size == 0, 0.15, 0.0))
    headcount[rng.random(n) < none_insured] = 0

    # High and new technology enterprises: about 3% of the register, active
    # companies, far more often above micro size.  A certificate runs three
    # years, so the current one was issued within the last three.
    p_high_tech = np.where(size == 0, 0.015, np.where(size == UNCLASSIFIED, 0.01, 0.12))
    high_tech = (form == COMPANY) & (status == ACTIVE) & (rng.random(n) < p_high_tech)
    first = np.maximum(registered_day + 180, window.today - 3 * 365)
    first = np.where(first > window.today, registered_day, first)
    high_tech_day = np.where(
        high_tech,
        first + np.floor(rng.random(n) * (window.today - first + 1)).astype(np.int64),
        -1,
    )

    authority = list(T.LEGAL_FORM_AUTHORITY)
    body = scramble(np.arange(n, dtype=np.int64), 10**8, int(rng.integers(0, 10**8)))
    code = credit_codes("credit_code", authority, form, ctx.region_digits[region], body)
    name = _names(rng, ctx, form, region, section, size)

    frame = pl.DataFrame(
        [
            code,
            name,
            pick("region_code", ctx.region_codes, region),
            industry,
            pick("size_class", T.SIZE_CLASSES, np.minimum(size, 3), size != UNCLASSIFIED),
            pick("legal_form", T.LEGAL_FORMS, form),
            date_strings("registered_on", registered_day),
            pick("status", T.STATUSES, status),
            pl.Series("is_high_tech", high_tech, dtype=pl.Boolean),
            date_strings("high_tech_certified_on", high_tech_day, high_tech),
        ]
    )
    return Enterprises(
        code=code,
        name=name,
        region=region,
        form=form,
        size=size,
        status=status,
        registered_day=registered_day,
        registered_month=registered_month,
        closed_month=closed_month,
        section=section,
        headcount=headcount,
        high_tech_day=high_tech_day,
        frame=frame,
    )


def _luhn_table() -> npt.NDArray[np.int16]:
    """Luhn sum of each 4-digit group whose last digit is doubled (and the third)."""
    digits = digit_rows(np.arange(10_000), 4).astype(np.int16) - ord("0")
    doubled = digits[:, [1, 3]] * 2
    doubled -= 9 * (doubled > 9)
    table: npt.NDArray[np.int16] = (digits[:, 0] + digits[:, 2] + doubled.sum(axis=1)).astype(
        np.int16
    )
    return table


_LUHN4 = _luhn_table()


def _luhn_sum(value: int, first_doubled: bool) -> int:
    """Luhn sum of the digits of a small number, its last digit doubled or not."""
    total = 0
    for i, ch in enumerate(reversed(str(value))):
        d = int(ch) * (2 if (i % 2 == 0) == first_doubled else 1)
        total += d - 9 if d > 9 else d
    return total


def bank_accounts(rng: np.random.Generator, n: int, person: bool) -> tuple[pl.Series, pl.Series]:
    """Bank codes and account numbers for n accounts (enterprise or personal).

    Personal accounts are social security cards: the bank's UnionPay BIN,
    random digits and a Luhn check digit, as on any bank card.  Account
    numbers of one length are built as one block of digits.
    """
    share = [b[3] if person else b[1] for b in T.BANKS]
    bank = draw(rng, share, n)
    length_of_bank = np.array([b[5] if person else b[2] for b in T.BANKS], dtype=np.int64)
    bins = np.array([int(b[4]) for b in T.BANKS], dtype=np.int64)
    length = length_of_bank[bank]
    pieces = []
    for width in sorted(set(length_of_bank[np.asarray(share) > 0].tolist())):
        idx = np.flatnonzero(length == width)
        k = idx.shape[0]
        if person:
            # BIN (6 digits), body, check digit; 19 digits fit an int64 (BINs start with 6).
            body_width = width - 7
            body = rng.integers(0, 10**body_width, k, dtype=np.int64)
            total = np.array(
                [_luhn_sum(int(b), body_width % 2 == 0) for b in bins], dtype=np.int64
            )[bank[idx]]
            for j in range(-(-body_width // 4)):
                total += _LUHN4[(body // 10 ** (4 * j)) % 10_000]
            check = (10 - total % 10) % 10
            number = (bins[bank[idx]] * 10**body_width + body) * 10 + check
            rows = digit_rows(number, width)
        else:
            high_width = width - 12
            low = rng.integers(0, 10**12, k, dtype=np.int64)
            if high_width > 0:
                high = rng.integers(10 ** (high_width - 1), 10**high_width, k, dtype=np.int64)
                rows = np.concatenate([digit_rows(high, high_width), digit_rows(low, 12)], axis=1)
            else:
                rows = digit_rows(low + 10**11 * (low < 10**11), 12)
        pieces.append((idx, ascii_series("account_no", rows)))
    codes = pick("bank_code", [b[0] for b in T.BANKS], bank)
    return codes, take_in_order(pieces, n, "account_no")


def build_enterprise_accounts(ctx: Context, ent: Enterprises) -> tuple[pl.DataFrame, IntArray]:
    """Basic deposit accounts of most enterprises; returns the frame and the holders' indices."""
    rng = ctx.rng("enterprise_accounts")
    # Almost every active company has a basic account; individual businesses
    # often trade through the owner's personal account; closed subjects have
    # mostly closed theirs.
    p = np.where(ent.form == INDIVIDUAL, 0.78, 0.97)
    p = np.where(ent.status == ACTIVE, p, 0.35)
    holder = np.flatnonzero(rng.random(ent.n) < p)
    bank, account_no = bank_accounts(rng, holder.shape[0], person=False)
    frame = pl.DataFrame(
        [
            ent.code.gather(holder),
            bank,
            account_no,
            ent.name.gather(holder).alias("account_name"),
        ]
    )
    return frame, holder


def build_enterprise_si_accounts(ctx: Context, ent: Enterprises) -> tuple[pl.DataFrame, IntArray]:
    """The social insurance contribution accounts the agency has on file: most active
    enterprises', independently of their basic account (some contribute from another
    bank's account, a few have no basic account on record but contribute); returns the
    frame and the holders' indices."""
    rng = ctx.rng("enterprise_si_accounts")
    p = np.where(ent.form == INDIVIDUAL, 0.55, 0.9)
    p = np.where(ent.status == ACTIVE, p, 0.3)
    holder = np.flatnonzero(rng.random(ent.n) < p)
    bank, account_no = bank_accounts(rng, holder.shape[0], person=False)
    frame = pl.DataFrame(
        [
            ent.code.gather(holder),
            bank,
            account_no,
            ent.name.gather(holder).alias("account_name"),
        ]
    )
    return frame, holder


def referenced_mask(n: int, *indices: IntArray) -> BoolArray:
    """True for entities that some other source row refers to."""
    mask = np.zeros(n, dtype=bool)
    for idx in indices:
        mask[idx] = True
    return mask
