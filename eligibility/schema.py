"""The file formats people write: a policy file and the feature catalogue (pydantic).

Unknown keys are refused everywhere, so a misspelt key is an error with a
position, never a silently ignored rule.  Expressions stay text here; `check.py`
parses and type-checks them.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from common.periods import written_date

ID = re.compile(r"^[a-z][a-z0-9_-]*$")
FeatureType = Literal["text", "count", "number", "money", "date", "bool"]
Window = Literal["previous_year", "last_12_months", "benefit_period", "year_to_date", "as_of"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Scalar = str | int | float | bool | dt.date | Decimal | None
# A date a person wrote: YYYY-MM-DD within 1850-2999, never a number read as a timestamp.
Date = Annotated[dt.date, BeforeValidator(written_date)]


# --- the feature catalogue -----------------------------------------------------


EntityName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class AccountDef(_Strict):
    """An account a payable entity may be paid to: a source keyed by the entity, one row
    per holder, with its bank_code and account_no."""

    source: str
    description: str


class EntityDef(_Strict):
    """An entity kind: the source that lists them, whether money can be paid to it, and the
    accounts it can be paid to (the first is where a policy pays unless it says otherwise)."""

    source: str
    payable: bool = Field(
        default=False,
        description="payouts may go to it (an enterprise, a person: its accounts are on "
        "file); a policy on an entity that is not (a household, a certificate, a lease) "
        "names its payee over a relation",
    )
    description: str = ""
    accounts: dict[EntityName, AccountDef] = Field(
        default={},
        description="named accounts on file for the entity kind, in order of preference: "
        "a policy's payment: {account: ...} picks among them",
    )


class TimedSource(_Strict):
    """Which column of a source holds its period (a month date, or an integer year)."""

    column: str
    unit: Literal["month", "year"] = "month"


class RelationDef(_Strict):
    """A one-to-many link between entities, from a source (hires, guardians, a household's
    members), or the links of relations followed one after the other (`via`: a person's
    household, then its members)."""

    from_: EntityName = Field(alias="from")
    to: EntityName
    source: str | None = None
    from_key: str | None = None
    to_key: str | None = None
    via: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=4,
        description="relations followed in turn, each from the entity the one before leads "
        "to; the links' attributes are those of every step",
    )
    where: str | None = None
    during: str | None = Field(
        default=None, description="a date column of the link: only links dated in the window count"
    )
    attributes: dict[str, str] = Field(
        default_factory=dict, description="name -> column of the link, usable in aggregate bodies"
    )
    description: str

    @model_validator(mode="after")
    def _source_or_via(self) -> RelationDef:
        direct = (self.source, self.from_key, self.to_key)
        if self.via is None and None in direct:
            raise ValueError(
                "a relation reads a source (source, from_key, to_key) or follows others (via)"
            )
        if self.via is not None and (
            any(x is not None for x in direct) or self.where or self.during or self.attributes
        ):
            raise ValueError(
                "a relation with via takes its links, their dates and attributes from the relations "
                "it follows: give no source, keys, where, during or attributes"
            )
        return self


class FeatureWindow(_Strict):
    """A feature's own look-back, from the policy's assessed window: shifted back by whole
    years, and/or the last `months` months of it (which may reach before its start); or,
    with `anchor` (a date of the entity's own record), the `months` months before the
    anchor's month (the year before its certification)."""

    years_before: int = Field(default=0, ge=0, le=50)
    months: int | None = Field(default=None, ge=1, le=600)
    anchor: str | None = None

    @model_validator(mode="after")
    def _anchored(self) -> FeatureWindow:
        if self.anchor is not None and (self.months is None or self.years_before):
            raise ValueError("a window anchored on a date takes months: the months before it")
        return self


class FeatureDef(_Strict):
    """A named per-entity value: a column at the snapshot, or an aggregate over the window."""

    type: FeatureType
    description: str
    source: str | None = None
    column: str | None = None
    agg: (
        Literal[
            "value",
            "sum",
            "mean",
            "min",
            "max",
            "first",
            "last",
            "count",
            "count_distinct",
            "months",
            "at_start",
            "at_end",
        ]
        | None
    ) = None
    where: str | None = None
    relation: str | None = None
    body: str | None = Field(default=None, description="for relation features: what sum() adds up")
    unit: Literal["fen", "yuan"] | None = None
    window: FeatureWindow | None = Field(
        default=None, description="its own look-back (a timed source's feature only)"
    )

    @model_validator(mode="after")
    def _shape(self) -> FeatureDef:
        if self.relation is None and self.source is None:
            raise ValueError("a feature reads a source (source + column) or a relation")
        if self.relation is not None and self.source is not None:
            raise ValueError("a feature reads either a source or a relation, not both")
        if self.source is not None and self.column is None and self.agg not in ("count", "months"):
            raise ValueError("a source feature needs a column (except for count and months)")
        if self.relation is not None and self.agg not in ("count", "sum", "any", "all", None):
            raise ValueError("a relation feature aggregates with count or sum")
        if self.type == "money" and self.unit is None:
            raise ValueError("a money feature says the unit of its column: unit: fen")
        return self


class FeatureCatalogue(_Strict):
    """policies/features.yaml."""

    version: Literal[1]
    entities: dict[str, EntityDef]
    timed: dict[str, TimedSource] = {}
    relations: dict[str, RelationDef] = {}
    lists: dict[str, str] = Field(
        default_factory=dict,
        description="the credit lists the credit office delivers: name -> what it is",
    )
    features: dict[EntityName, dict[str, FeatureDef]]


# --- a policy file -----------------------------------------------------------------


class Basis(_Strict):
    """The legal basis: the document, and optionally where to read it."""

    document: str
    issued_by: str | None = None
    issued_on: Date | None = None
    url: str | None = None


class Validity(_Strict):
    """When the policy may pay: from and until (inclusive) dates."""

    from_: Date = Field(alias="from")
    until: Date | None = None

    @model_validator(mode="after")
    def _order(self) -> Validity:
        if self.until is not None and self.until < self.from_:
            raise ValueError("valid.until is before valid.from")
        return self


class Budget(_Strict):
    """A total for each benefit period and what happens beyond it."""

    total_yuan: Decimal
    over_budget: Literal["pro_rata", "rank", "refuse"]
    rank_by: str | None = Field(default=None, description="for rank: higher first")

    @model_validator(mode="after")
    def _rank(self) -> Budget:
        if self.over_budget == "rank" and self.rank_by is None:
            raise ValueError("over_budget: rank needs rank_by, the expression that orders claims")
        if self.total_yuan <= 0:
            raise ValueError("total_yuan must be positive")
        return self


class PayeeRelation(_Strict):
    """Pay someone related to the entity, e.g. a child's parent or guardian."""

    relation: str
    where: str | None = None


class NoticeRule(_Strict):
    """The public notice before payment (公示): how many working days a run's new
    entitlements stay published for objections before they may be instructed."""

    working_days: int = Field(ge=1, le=60)
    ref: str | None = None


class Unbanked(_Strict):
    """A payee without a usable account: the entitlement is held, and once `waive_after_days`
    have passed since it was granted with still none on record (or still the one the bank
    returned), it is deemed waived (视为自动放弃): reversed, and later nights keep it so."""

    waive_after_days: int = Field(ge=1, le=3660)
    ref: str | None = None


class Offset(_Strict):
    """Set a grant against what its payee owes back (从后续补贴中抵扣): before the grant is
    instructed, an open receivable of the payee (left by a clawback) is settled from it
    and only the rest is paid.  `against`: the receivables of this policy only, or of
    any policy."""

    against: Literal["this_policy", "any_policy"]
    ref: str | None = None


class Payment(_Strict):
    """Where the money goes: `account` names one of the payee's accounts in the catalogue,
    or `coalesce(a, b, ...)`, the first of them on file."""

    account: str
    ref: str | None = None


class ParamValue(_Strict):
    """One dated value of a parameter, with the text that set it: a value, a list of
    values (for `in`), or a table keyed by a code (for `lookup`, `default` for the rest)."""

    from_: Date = Field(alias="from")
    value: Scalar | list[Scalar] | dict[str | int, Scalar]
    ref: str


class Condition(_Strict):
    """One eligibility condition: an id, the expression, and its legal reference."""

    id: str
    when: str
    ref: str | None = None
    text: str | None = Field(default=None, description="plain words for explanations")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError("a condition id is lower-case letters, digits, - and _")
        return v


class Bracket(_Strict):
    """One bracket of tiers: from (inclusive) to (exclusive) of the `by` value."""

    from_: Scalar = Field(default=None, alias="from")
    to: Scalar = None
    amount: Scalar = None
    rate: Scalar = None


class Tiers(_Strict):
    """step: the bracket `by` falls in gives the amount; marginal: each slice at its rate."""

    by: str
    mode: Literal["step", "marginal"] = "step"
    brackets: list[Bracket]


class TableRow(_Strict):
    """A row of a first-hit decision table."""

    when: str
    amount: Scalar


class Prorate(_Strict):
    """Pay for the months of the benefit period between two dates (both months included)."""

    by: Literal["month"] = "month"
    from_: str | None = Field(default=None, alias="from")
    until: str | None = None


class Rounding(_Strict):
    """How the amount is rounded: to the fen, the yuan or ten yuan; half up (away from
    zero), half to even, or down (toward zero)."""

    to: Literal["fen", "yuan", "ten_yuan"] = "fen"
    mode: Literal["half_up", "half_even", "down"] = "half_up"


class Amount(_Strict):
    """How much: one of formula, tiers, table or monthly; then proration, cap and rounding."""

    formula: Scalar = None
    tiers: Tiers | None = None
    table: list[TableRow] | None = None
    monthly: str | None = Field(
        default=None,
        description="the amount of each month of the benefit period, summed; `month` names "
        "the month's first day (an allowance whose tier changes on a birthday's month)",
    )
    otherwise: Scalar = None
    prorate: Prorate | None = None
    cap: Scalar = None
    round: Literal["fen", "yuan", "ten_yuan"] | Rounding = "fen"

    @model_validator(mode="after")
    def _one(self) -> Amount:
        given = [x for x in (self.formula, self.tiers, self.table, self.monthly) if x is not None]
        if len(given) != 1:
            raise ValueError("amount has exactly one of formula, tiers, table or monthly")
        if self.otherwise is not None and self.table is None:
            raise ValueError("otherwise belongs to a table")
        return self


class Expect(_Strict):
    """What an officer's case expects."""

    eligible: bool
    amount: Scalar = None
    amount_yuan: Decimal | None = None
    reason: str | None = Field(default=None, description="the id of the first failing condition")
    payee: str | None = None
    account: str | None = Field(
        default=None,
        description="the payee's account paid to (its name in the catalogue), or none",
    )


ParamSetting = Scalar | list[Scalar] | dict[str | int, Scalar]


class Variant(_Strict):
    """An alternative reading of the policy (a province's choice, another formula): the
    parameters and lets it sets differently; everything else is the file's."""

    description: str | None = None
    params: dict[str, ParamSetting] = {}
    let: dict[str, str] = {}


class Case(_Strict):
    """An officer's worked example: feature values given, the result expected; under a
    variant and with parameters set for this example, if it says so."""

    name: str
    as_of: Date | None = None
    variant: str | None = None
    params: dict[str, ParamSetting] = {}
    given: dict[str, Any]
    expect: Expect


TransferKind = Literal["grant", "adjustment", "reversal", "clawback"]


class ExpectTransfer(_Strict):
    """One transfer a scenario's run is expected to post for the entity's key: its kind and
    its effect on what the key holds (up for a grant or an increase, negative for a decrease,
    a reversal or a clawback); the payee and the benefit period, if they matter."""

    kind: TransferKind
    amount: Scalar
    payee: str | None = None
    period: str | int | None = Field(
        default=None,
        description="the benefit period it is posted for, if it matters (a past period's "
        "back-pay: 2025)",
    )


class ExpectRun(_Strict):
    """What one run of a scenario expects: the night's decision (eligible, reason, payee),
    what the ledger holds for the key of the run's benefit period once it has posted
    (`amount`), and the transfers it posted for the entity (`[]`: none)."""

    eligible: bool | None = None
    reason: str | None = None
    payee: str | None = None
    amount: Scalar = None
    transfers: list[ExpectTransfer] | None = None


class ScenarioRun(_Strict):
    """One nightly run of a scenario: its date, what changed since the run before (features
    given anew replace theirs; a relation given anew replaces its members), whether the bank
    paid out what was payable after it, and what it expects."""

    as_of: Date
    given: dict[str, Any] = {}
    paid: bool = Field(
        default=False,
        description="after this run the bank pays the payee what is payable (a settled "
        "payment): a later decrease is then a clawback",
    )
    expect: ExpectRun


class ExpectTotal(_Strict):
    """What the ledger holds for the entity over a period once every run has posted: a benefit
    period's key (2026, 2026-Q2, 2026-03, once), or a year summing its months or quarters."""

    period: str | int
    amount: Scalar


class Scenario(_Strict):
    """An officer's worked example over several nightly runs: the entity's features at the
    first run, the runs with what changed before each and what each posts, and totals; run
    on the real allocation and posting over a scratch ledger."""

    name: str
    variant: str | None = None
    params: dict[str, ParamSetting] = {}
    given: dict[str, Any]
    runs: list[ScenarioRun] = Field(min_length=1, max_length=36)  # three years of months
    expect_total: ExpectTotal | list[ExpectTotal] | None = None

    @property
    def totals(self) -> list[ExpectTotal]:
        """The totals expected, as a list."""
        if self.expect_total is None:
            return []
        return self.expect_total if isinstance(self.expect_total, list) else [self.expect_total]


class Define(_Strict):
    """A function of the policy's own, declared once and used where it is needed (a
    per-person tier applied to each member of a household): an expression of its
    arguments, or step tiers by one of them (`otherwise` where no bracket holds)."""

    args: list[str]
    expr: str | None = None
    tiers: Tiers | None = None
    otherwise: Scalar = None
    description: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Define:
        if (self.expr is None) == (self.tiers is None):
            raise ValueError("a definition has exactly one of expr or tiers")
        if self.tiers is not None and self.tiers.mode != "step":
            raise ValueError("a defined tier table is a step table")
        return self


_MONTH_DAY = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


class BackPay(_Strict):
    """Past benefit periods still paid to whoever qualified then but was never paid (a
    birth registered late): each decided as of its last day over the night's data, a
    grant only for a key the ledger never held (docs/policies.md, "Back-pay")."""

    periods: int = Field(
        ge=1,
        le=36,
        description="how many benefit periods before the current one may still be paid",
    )
    until: str | None = Field(
        default=None,
        description="MM-DD: a past period is paid only by this day after it ends (03-31: "
        "the year's claims close on the 31st of March after it)",
    )
    since: Date | None = Field(
        default=None,
        description="no period ending before this day is paid: the day this ledger took "
        "over a scheme paid before by other means, whose payments it does not hold",
    )
    ref: str | None = None

    @field_validator("until")
    @classmethod
    def _month_day(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _MONTH_DAY.match(v) or v == "02-29":
            raise ValueError(
                f"until {v!r} is not a day of every year written MM-DD (03-31, 12-31; not 02-29)"
            )
        month, day = int(v[:2]), int(v[3:])
        try:
            dt.date(2001, month, day)
        except ValueError:
            raise ValueError(f"until {v!r}: month {month} has no day {day}") from None
        return v


class OncePer(_Strict):
    """A related member (a hired person) counts for at most one entitlement of the named
    policies, ever: one already counted (in the ledger, or by an earlier claim in this
    run) does not count again (docs/policies.md, "Counted once")."""

    relation: str = Field(description="the relation whose members count once (hires)")
    across: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="the other policies a member counted by one of them may not count for "
        "again; each declares the same once_per",
    )


class PolicyFile(_Strict):
    """One policy, as its officer writes it."""

    policy: str
    title: str
    basis: Basis
    target: EntityName
    payee: Literal["self"] | PayeeRelation = "self"
    valid: Validity
    assess: Window = "as_of"
    benefit_period: Literal["once", "year", "quarter", "month"]
    group: str | None = None
    priority: int = 0
    decide: Literal["each_run", "once"] = Field(
        default="each_run",
        description="each_run: every night decides again (a changed entity is adjusted); "
        "once: a grant stands once posted (who leaves after the review keeps it)",
    )
    budget: Budget | None = None
    events: bool = Field(
        default=False,
        description="also decide an entity as its data arrives (`disburse events serve`), "
        "with the same rules and keys as the nightly run",
    )
    once_per: OncePer | None = None
    back_pay: BackPay | None = None
    notice: NoticeRule | None = Field(
        default=None,
        description="publish before paying: entitlements are instructed only once a notice "
        "of the run that granted them has been open this many working days",
    )
    params: dict[str, list[ParamValue]] = {}
    define: dict[str, Define] = {}
    let: dict[str, str] = {}
    eligible: list[Condition]
    amount: Amount
    variants: dict[str, Variant] = {}
    variant: str | None = Field(default=None, description="the variant in force when run")
    tests: list[Case] = []
    scenarios: list[Scenario] = Field(
        default=[],
        max_length=20,  # each is a scratch ledger and its runs: policy check stays quick
        description="worked examples over several nightly runs, posted to a scratch ledger",
    )
    notes: str | None = None
    payment: Payment | None = Field(
        default=None,
        description="the payee's account paid to; the catalogue's first account if not said",
    )
    offset: Offset | None = Field(
        default=None,
        description="set this policy's grants against what their payee owes back after a "
        "clawback (of this policy or of any), paying only the rest",
    )
    unbanked: Literal["hold"] | Unbanked | None = Field(
        default=None,
        description="hold: a payee without a bank account on record keeps the entitlement "
        "payable until one is (say it, or make an account a condition); "
        "{waive_after_days: N}: held, and deemed waived N days after it was granted",
    )

    @field_validator("policy")
    @classmethod
    def _policy_id(cls, v: str) -> str:
        if not ID.match(v):
            raise ValueError(
                "a policy id is lower-case letters, digits, - and _ (it is part of every ledger key)"
            )
        return v

    @field_validator("amount", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"formula": v} if isinstance(v, str | int | float) else v
