"""`disburse explain`: why an entity was paid what it was paid, or why not, from the record.

Everything comes from what the run recorded: its row (as-of date, archive and
allocation files), the source snapshots' hashes, the archived copy of the
policy file and feature catalogue it read (checked against their sha256), the
archived row of the entity (feature values, each condition's result, the
amount; its decision row is derived from it as the run derived its claims),
the allocation (stacking and budget) and the ledger's transfers for the key.
Nothing is evaluated over the sources again; the values between features and
results (lets, the sides of each comparison, the amount's steps) are worked out
by the reference interpreter from the archived features, and where the entity
met every condition it must agree with the archived amount.

The one exception: the members of the aggregates that decided (an enterprise's
hires, a household's children), which the archive does not keep.  They are read
from the sources the run staged, for this one entity, by the plan and compiled
expressions the run aggregated them with (`eligibility.backends.polars.members`),
and checked against the aggregate's archived value; with the staged sources
deleted, the explanation says that they cannot be shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from common.money import format_yuan, yuan_to_fen
from eligibility import (
    CheckedCatalogue,
    CheckedPolicy,
    MemberBreakdown,
    Naming,
    RowExplanation,
    back_pay_dates,
    explain_members,
    explain_row,
    is_active,
    load_policy,
    once_aggregate,
    once_scope,
    payee_kind,
    run_dates,
    show_value,
)
from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.catalogue_dir import source_catalogue
from jobs.errors import JobError
from jobs.evaluate import decisions_of_wide, staged_scan
from jobs.events.explain import EventDecision, event_decisions
from jobs.ingest import sha256_file, staged_dir
from jobs.policies import check_features
from jobs.settings import Settings
from ledgers import runs
from ledgers.counted import counted_frame
from ledgers.db import open_engine, require_ledger
from ledgers.holdings import signed_amount
from ledgers.masking import mask_entity
from ledgers.objections import objections
from ledgers.recoveries import owed_by_key
from ledgers.runs import HashedFile, RunRecord
from ledgers.schema import ENTITLEMENT_KINDS, PAYMENT_KINDS, Transfer


def _archived(entry: HashedFile | None, what: str, run_id: int) -> Path:
    if entry is None:
        raise JobError(
            f"run {run_id} archived no {what}",
            fix="the run predates archived feature catalogues: explain a later run (--run)",
        )
    path = entry.path
    if not path.is_file():
        raise JobError(
            f"run {run_id}: the archived {what} {path} is missing",
            fix="restore the store folder (--store / $DISBURSE_STORE) from its backup",
        )
    if sha256_file(path) != entry.sha256:
        raise JobError(
            f"run {run_id}: the archived {what} {path} does not match its recorded sha256",
            fix="it was changed after the run; restore it from the backup",
        )
    return path


def _archive(run: RunRecord) -> runs.RunArchive:
    if run.archive is None:
        raise JobError(
            f"run {run.run_id} is not a nightly run with recorded decisions",
            fix="`disburse ledger summary` lists the runs; give one that reached 'evaluated'",
        )
    return run.archive


def archived_policies(
    run: RunRecord, policy_ids: list[str] | None = None, *, sources: Catalogue | None = None
) -> tuple[CheckedCatalogue, dict[str, CheckedPolicy]]:
    """The feature catalogue and the policies (all, or `policy_ids`) as the run read them,
    from its archived copies, each checked against its recorded sha256; the feature
    catalogue checked against the source catalogue `sources` (default the shipped one)."""
    archive = _archive(run)
    features_file = _archived(archive.catalogue, "feature catalogue", run.run_id)
    cat = check_features(features_file, sources or load_source_catalogue())
    wanted = sorted(archive.policies) if policy_ids is None else policy_ids
    policies = {
        pid: load_policy(_archived(archive.policies[pid], "policy file", run.run_id), cat)
        for pid in wanted
    }
    return cat, policies


def archived_decisions(run: RunRecord, *, sources: Catalogue | None = None) -> pl.LazyFrame:
    """A run's whole decision table (every policy and entity, refusals with their reasons),
    derived from its wide archive: the run itself keeps only the claims.  The run's own
    benefit periods: a policy no longer valid that the run read for its back-pay only
    has none."""
    archive = _archive(run)
    _cat, policies = archived_policies(run, sources=sources)
    scans = {
        target: pl.scan_parquet(_archived(entry, f"{target} features", run.run_id))
        for target, entry in archive.features.items()
    }
    active = [p for p in policies.values() if is_active(p, run.as_of)]
    return decisions_of_wide(scans, active, run.as_of)


def _find_run(engine: Engine, policy_id: str, run_id: int | None) -> RunRecord:
    if run_id is not None:
        run = runs.get_run(engine, run_id)
        if run is None or run.archive is None:
            raise JobError(
                f"run {run_id} is not a nightly run with recorded decisions",
                fix="`disburse ledger summary` lists the runs; give one that reached 'evaluated'",
            )
        return run
    found = runs.evaluated_with(engine, policy_id)
    if found is None:
        raise JobError(
            f"no nightly run has evaluated policy {policy_id!r}",
            fix="check the policy id (`disburse policy check` lists them), or run the night first",
        )
    return found


# --- the explanation, typed ------------------------------------------------------------


@dataclass(frozen=True)
class PolicyBasis:
    """The legal basis of a policy, as its file states it."""

    document: str
    issued_by: str | None
    issued_on: dt.date | None


@dataclass(frozen=True)
class ExplainedPolicy:
    """The policy an explanation is about, as the run read it."""

    id: str
    title: str
    basis: PolicyBasis
    sha256: str
    group: str | None = None  # its stacking group
    budget_fen: int | None = None  # its budget per benefit period
    over_budget: str | None = None  # what happens beyond it


@dataclass(frozen=True)
class AllocationDecision:
    """What allocation made of the key's claim: stacking and budget, the amount entitled."""

    claim_fen: int
    held_before_fen: int
    amount_fen: int
    stacking: str | None
    budget: str | None


@dataclass(frozen=True)
class LedgerTransfer:
    """One transfer the ledger holds for the key (payees masked unless asked)."""

    transfer_id: int
    run_id: int
    kind: str
    debit: str
    credit: str
    amount_fen: int
    hash: str


@dataclass(frozen=True)
class Explanation:
    """Why an entity was paid what it was paid under a policy in a run, or why not.

    The fields from `window` to `reference_agrees` are the per-row explanation of
    `eligibility.explain.explain_row` (read in `_row_fields` only)."""

    run_id: int
    as_of: dt.date
    policy: ExplainedPolicy
    sources: Mapping[str, str]  # source -> sha256 the run read
    entity: str  # masked unless asked
    target: str
    benefit_period: str
    eligible: bool
    reason: str | None
    claim_fen: int
    window: str
    computed_fen: int | None
    features: Mapping[str, Any]
    feature_types: Mapping[str, str]
    lets: Mapping[str, Any]
    lists: Sequence[str]
    conditions: Sequence[Mapping[str, Any]]
    amount_steps: Sequence[str]
    reference_agrees: bool
    allocation: AllocationDecision | None
    payee: str | None
    paid_to: PaidTo | None  # None: the run recorded no account choice (before accounts)
    transfers: Sequence[LedgerTransfer]
    amount_fen: int  # what the ledger holds for the key
    # The decisive aggregates member by member (identifiers masked unless asked); None
    # where the run's staged sources are gone and the members cannot be listed.
    members: Sequence[MemberBreakdown] | None = ()
    # Back-pay: a past benefit period this run decided, as of its last day (`as_of`); and
    # the other periods the run decided for the policy (to give with --period).
    # Objections to the key (`ledgers.objections`): id, standing, reason, decision, note.
    objections: Sequence[Mapping[str, Any]] = ()
    # A key clawed back after it was paid (`ledgers.recoveries.owed_by_key`): clawed back,
    # recovered, set off against later grants, still owed; None if never clawed back.
    owed_back: Mapping[str, int] | None = None
    back_pay: dt.date | None = None  # the day the past period was decided as of
    other_periods: Sequence[str] = ()
    # once_per: the members this entitlement counted, and those it did not because another
    # entitlement counted them first ({member, by}); identifiers masked unless asked.
    counted: Sequence[str] = ()
    passed_over: Sequence[Mapping[str, str]] = ()
    # The transfers an events run posted, with the events that decided them.
    by_events: Sequence[EventDecision] = ()

    @property
    def first_failing(self) -> Mapping[str, Any] | None:
        """The first condition the entity did not meet, if any."""
        return next((c for c in self.conditions if not c["passed"]), None)

    def to_json(self) -> dict[str, Any]:
        """What `disburse explain --json` prints."""
        basis = self.policy.basis
        a = self.allocation
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "policy": {
                "id": self.policy.id,
                "title": self.policy.title,
                "basis": {
                    "document": basis.document,
                    "issued_by": basis.issued_by,
                    "issued_on": basis.issued_on.isoformat() if basis.issued_on else None,
                },
                "sha256": self.policy.sha256,
                "group": self.policy.group,
                "budget": None
                if self.policy.budget_fen is None
                else {"total_fen": self.policy.budget_fen, "over_budget": self.policy.over_budget},
            },
            "sources": dict(self.sources),
            "entity": self.entity,
            "target": self.target,
            "benefit_period": self.benefit_period,
            "back_pay_as_of": self.back_pay.isoformat() if self.back_pay else None,
            "other_periods": list(self.other_periods),
            "window": self.window,
            "eligible": self.eligible,
            "reason": self.reason,
            "first_failing": self.first_failing,
            "claim_fen": self.claim_fen,
            "computed_fen": self.computed_fen,
            "features": dict(self.features),
            "feature_types": dict(self.feature_types),
            "lets": dict(self.lets),
            "lists": list(self.lists),
            "conditions": [dict(c) for c in self.conditions],
            "amount_steps": list(self.amount_steps),
            "reference_agrees": self.reference_agrees,
            "allocation": None
            if a is None
            else {
                "claim_fen": a.claim_fen,
                "held_before_fen": a.held_before_fen,
                "amount_fen": a.amount_fen,
                "stacking": a.stacking,
                "budget": a.budget,
            },
            "payee": self.payee,
            "paid_to": None
            if self.paid_to is None
            else {"account": self.paid_to.account, "preference": list(self.paid_to.preference)},
            "transfers": [
                {
                    "transfer_id": t.transfer_id,
                    "run_id": t.run_id,
                    "kind": t.kind,
                    "debit": t.debit,
                    "credit": t.credit,
                    "amount_fen": t.amount_fen,
                    "hash": t.hash,
                }
                for t in self.transfers
            ],
            "amount_fen": self.amount_fen,
            "members": None if self.members is None else [m.to_json() for m in self.members],
            "counted": list(self.counted),
            "passed_over": [dict(p) for p in self.passed_over],
            "objections": [dict(o) for o in self.objections],
            "owed_back": None if self.owed_back is None else dict(self.owed_back),
            "decided_by_events": [d.to_json() for d in self.by_events],
        }

    def to_text(self) -> str:
        """The explanation as plain text for the auditor."""
        return render_explanation(self)


@dataclass(frozen=True)
class PaidTo:
    """The account the payee is paid to, of the policy's accounts in order of preference."""

    account: str | None  # None: none of them on file
    described: str  # what the account is, from the catalogue
    preference: tuple[str, ...]
    ref: str | None = None  # the policy's article that says where it is paid

    def to_text(self) -> str:
        if self.account is None:
            return (
                f"no account on file of {', '.join(self.preference)}: the entitlement stays "
                "payable until one is"
            )
        return f"its {self.account} account, {self.described}"


def _paid_to(
    alloc: Mapping[str, Any] | None, policy: CheckedPolicy, cat: CheckedCatalogue
) -> PaidTo | None:
    if alloc is None or "account" not in alloc or not policy.accounts:
        return None
    account = alloc["account"]
    kind = str(payee_kind(policy.spec, cat))
    described = cat.spec.entities[kind].accounts[account].description if account else ""
    ref = policy.spec.payment.ref if policy.spec.payment else None
    return PaidTo(account, described, policy.accounts, ref)


def _row_fields(detail: RowExplanation) -> dict[str, Any]:
    """The per-row explanation of `explain_row`, as the Explanation's fields: the one place
    that reads it."""
    return {
        "window": detail.window,
        "computed_fen": detail.amount_fen,
        "features": detail.features,
        "feature_types": detail.feature_types,
        "lets": detail.lets,
        "lists": detail.lists,
        "conditions": [c.to_json() for c in detail.conditions],
        "amount_steps": detail.amount_steps,
        "reference_agrees": detail.reference_agrees,
    }


def explain(
    engine: Engine,
    policy_id: str,
    entity: str,
    *,
    run_id: int | None = None,
    unmask: bool = False,
    sources: Catalogue | None = None,
    period: str | None = None,
) -> Explanation:
    """The explanation of (policy, entity) in a run (default: the latest that evaluated it);
    the run's archived feature catalogue read against `sources` (default the shipped one).
    `period`: a past benefit period the run decided as back-pay (default: the run's own)."""
    run = _find_run(engine, policy_id, run_id)
    archive = _archive(run)
    if policy_id not in archive.policies:
        raise JobError(
            f"run {run.run_id} did not evaluate policy {policy_id!r} "
            f"(it evaluated {', '.join(sorted(archive.policies))})",
            fix="leave out --run to take the latest run that evaluated it",
        )
    show: Callable[[Any], Any] = (lambda v: v) if unmask else mask_entity
    cat, policies = archived_policies(run, [policy_id], sources=sources)
    policy = policies[policy_id]
    current = run_dates(policy, run.as_of).period.key if is_active(policy, run.as_of) else None
    past = {
        p.key: day
        for p, day in back_pay_dates(policy, run.as_of)
        if day.isoformat() in archive.back_pay
    }
    decided = ([current] if current else []) + sorted(past)
    if period is None and current is None and past:
        period = max(past)  # a policy no longer valid pays only back-pay: its latest period
    if period is not None and period != current and period not in past:
        raise JobError(
            f"run {run.run_id} did not decide {policy_id} for benefit period {period!r} "
            f"(it decided {', '.join(decided) or 'none'})",
            fix="give one of those with --period, or another run with --run",
        )
    wide_file = archive.features.get(policy.target)
    run_as_of = run.as_of
    if period is not None and period != current:
        day = past[period]
        run = replace(run, as_of=day)  # decided as of the past period's last day
        wide_file = archive.back_pay[day.isoformat()].get(policy.target)
    wide_rows = (
        pl.scan_parquet(_archived(wide_file, f"{policy.target} features", run.run_id))
        .filter(pl.col("entity_id") == entity)
        .collect()
    )
    if wide_rows.height == 0:
        raise JobError(
            f"{show(entity)} was not evaluated by {policy_id} in run {run.run_id}: it is not a "
            f"{policy.target} of the registry that run read",
            fix="check the identifier; `disburse quarantine --run N` shows rows refused at ingest",
        )
    wide = wide_rows.row(0, named=True)
    d = (
        decisions_of_wide({policy.target: wide_rows.lazy()}, [policy], run.as_of)
        .collect()
        .row(0, named=True)
    )
    detail = explain_row(policy, cat, run.as_of, wide)
    members = _members(run, policy, cat, wide, [c.passed for c in detail.conditions], show)
    if run.allocation is None:
        raise JobError(
            f"run {run.run_id} recorded no allocation",
            fix="finish it first: run the same `disburse run` command again",
        )
    allocation = (
        pl.scan_parquet(run.allocation.path)
        .filter(
            (pl.col("policy_id") == policy_id)
            & (pl.col("benefit_period") == d["period"])
            & (pl.col("entity") == entity)
        )
        .collect()
    )
    alloc = allocation.row(0, named=True) if allocation.height else None
    t = Transfer.__table__
    with engine.connect() as conn:
        transfers = conn.execute(
            select(
                t.c.transfer_id,
                t.c.run_id,
                t.c.kind,
                t.c.debit_account,
                t.c.credit_account,
                t.c.amount_fen,
                signed_amount().label("signed"),
                t.c.hash,
                t.c.decision,
            )
            .where(
                t.c.policy_id == policy_id,
                t.c.benefit_period == d["period"],
                t.c.entity == entity,
            )
            .order_by(t.c.transfer_id)
        ).all()
    counted, passed_over = _once(engine, policy, cat, run.as_of, wide, show)
    spec = policy.spec
    return Explanation(
        run_id=run.run_id,
        as_of=run_as_of,
        policy=ExplainedPolicy(
            id=policy_id,
            title=spec.title,
            basis=PolicyBasis(spec.basis.document, spec.basis.issued_by, spec.basis.issued_on),
            sha256=archive.policies[policy_id].sha256,
            group=spec.group,
            budget_fen=yuan_to_fen(spec.budget.total_yuan) if spec.budget else None,
            over_budget=spec.budget.over_budget if spec.budget else None,
        ),
        sources=run.sources,
        entity=show(entity),
        target=policy.target,
        benefit_period=d["period"],
        eligible=bool(d["eligible"]),
        reason=d["reason"],
        claim_fen=int(d["amount_fen"]),
        **_row_fields(detail),
        allocation=None
        if alloc is None
        else AllocationDecision(
            claim_fen=alloc["claim_fen"],
            held_before_fen=alloc["held_fen"],
            amount_fen=alloc["amount_fen"],
            stacking=alloc["stacking"],
            budget=alloc["budget"],
        ),
        payee=show(alloc["payee"]) if alloc else None,
        paid_to=_paid_to(alloc, policy, cat),
        transfers=[
            LedgerTransfer(
                transfer_id=r.transfer_id,
                run_id=r.run_id,
                kind=r.kind,
                debit=_mask_account(r.debit_account, show),
                credit=_mask_account(r.credit_account, show),
                amount_fen=r.amount_fen,
                hash=r.hash,
            )
            for r in transfers
        ],
        amount_fen=sum(int(r.signed) for r in transfers if r.kind in ENTITLEMENT_KINDS),
        objections=_objections(engine, policy_id, d["period"], entity, show),
        owed_back=_owed_back(engine, policy_id, d["period"], entity),
        members=members,
        back_pay=run.as_of if d["period"] != current else None,
        other_periods=[k for k in decided if k != d["period"]],
        counted=counted,
        passed_over=passed_over,
        by_events=event_decisions(
            engine,
            [(r.transfer_id, r.run_id, r.decision) for r in transfers],
            sources or load_source_catalogue(),
            unmask=unmask,
        ),
    )


def _members(
    run: RunRecord,
    policy: CheckedPolicy,
    cat: CheckedCatalogue,
    row: dict[str, Any],
    passed: list[bool],
    show: Callable[[Any], Any],
) -> list[MemberBreakdown] | None:
    """The decisive aggregates of the entity member by member, over the sources the run
    staged (None if they are gone: a run's archive keeps the owner's values, not its
    members')."""
    if run.store_dir is None:
        return None
    folder = staged_dir(Path(run.store_dir), run.run_id)
    if not folder.is_dir():
        return None
    try:
        return explain_members(
            staged_scan(folder), policy, cat, run.as_of, row, passed, show_id=lambda v: str(show(v))
        )
    except FileNotFoundError:  # some staged source deleted: as if all were
        return None


def _once(
    engine: Engine,
    policy: CheckedPolicy,
    cat: CheckedCatalogue,
    as_of: dt.date,
    wide: Mapping[str, Any],
    show: Callable[[Any], Any],
) -> tuple[list[str], list[dict[str, str]]]:
    """For a `once_per` policy: the members the entitlement counted, and those it did not
    count because another entitlement had (the ledger's, or a claim that came first in
    the run), with who counted them; identifiers through `show` (masked unless asked)."""
    agg, scope = once_aggregate(policy), once_scope(policy)
    if agg is None or scope is None:
        return [], []
    column = Naming(cat).aggregate(policy.id, agg, run_dates(policy, as_of).window)
    counted = list(wide.get(Naming.counted(column)) or [])
    passed = list(wide.get(Naming.passed_over(column)) or [])
    by: dict[str, str] = {}
    if passed:
        held = counted_frame(engine, [scope]).filter(pl.col("member").is_in(passed))
        for r in held.iter_rows(named=True):
            by[r["member"]] = (
                f"{r['policy_id']} {r['benefit_period']} for {show(r['entity'])} (run {r['run_id']})"
            )
    first = "a claim that came first in the run (an earlier key, or a smaller identifier)"
    return [show(m) for m in counted], [{"member": show(m), "by": by.get(m, first)} for m in passed]


def explain_entity(
    settings: Settings,
    policy_id: str,
    entity: str,
    *,
    run_id: int | None = None,
    unmask: bool = False,
    catalogue_dir: Path | str | None = None,
    period: str | None = None,
) -> Explanation:
    """`disburse explain`: open the ledger of `settings` and explain (policy, entity) in a run.

    The run archived the feature catalogue it read, not the source catalogue: that is read
    from `catalogue_dir` (--catalogue; default: see `jobs.catalogue_dir`), which should be
    the one the run used."""
    sources = source_catalogue(catalogue_dir)
    with open_engine(settings.db_url) as engine:
        with engine.connect() as conn:
            require_ledger(conn)
        return explain(
            engine,
            policy_id,
            entity,
            run_id=run_id,
            unmask=unmask,
            sources=sources,
            period=period,
        )


def _objections(
    engine: Engine, policy_id: str, period: str, entity: str, show: Callable[[Any], Any]
) -> list[dict[str, Any]]:
    """The objections to the key, oldest first (the entity as shown)."""
    with engine.connect() as conn:
        found = objections(conn).filter(
            (pl.col("policy_id") == policy_id)
            & (pl.col("benefit_period") == period)
            & (pl.col("entity") == entity)
        )
    return [
        {
            "objection_id": r["objection_id"],
            "standing": r["standing"],
            "reason": r["reason"],
            "evidence_sha256": r["evidence_sha256"],
            "decision": r["decision"],
            "note": r["note"],
            "entity": show(entity),
        }
        for r in found.iter_rows(named=True)
    ]


def _owed_back(engine: Engine, policy_id: str, period: str, entity: str) -> dict[str, int] | None:
    """What the key's payee owes back after a clawback, if it was ever clawed back."""
    with engine.connect() as conn:
        owed = owed_by_key(conn, policy_id, period, entity)
    return owed if owed["clawed_back_fen"] else None


def _mask_account(address: str, show: Callable[[Any], Any]) -> str:
    head, _, rest = address.partition(":")
    return f"{head}:{show(rest)}" if head in ("payable", "receivable") else address


def _stacking(s: str | None) -> str:
    if s is None:
        return "no other policy of the group claimed for this entity"
    if s == "alone":
        return "the only claim of its group"
    if s == "decided":
        return "decided on an earlier night (decide: once): the grant stands as posted"
    if s == "won":
        return "the highest claim of its group: it is the one paid"
    if s.startswith("lost:"):
        return f"lost to {s[5:]}, which pays more (or ranks higher) for this entity"
    if s.startswith("held:"):
        return f"the entity already holds {s[5:]} of the same group for an overlapping period"
    return s


def _budget(b: str | None) -> str:
    return {
        None: "nothing new drawn from it tonight: the key kept what it held",
        "within": "within the budget: paid in full",
        "pro_rata": "over budget: scaled pro rata so that exactly the budget left is paid",
        "rank:paid": "over budget: paid in full, by its rank",
        "rank:partial": "over budget: the last claim to fit, paid what was left of the budget",
        "rank:unpaid": "over budget: ranked after the budget ran out",
        "refused": "over budget and the policy refuses: nothing new paid",
    }.get(b, b or "")


def render_explanation(e: Explanation) -> str:
    """The explanation as plain text for the auditor."""
    p = e.policy
    basis = p.basis
    lines = [
        f"{e.entity} under {p.id} ({p.title}), benefit period {e.benefit_period}",
        f"  basis: {basis.document}"
        + (f"; {basis.issued_by}" if basis.issued_by else "")
        + (f", {basis.issued_on.isoformat()}" if basis.issued_on else ""),
        f"  run {e.run_id} as of {e.as_of.isoformat()}; policy file sha256 {p.sha256}"
        + (
            f"\n  back-pay: the past period {e.benefit_period}, decided as of its last day "
            f"({e.back_pay.isoformat()}) over the run's data"
            if e.back_pay
            else ""
        )
        + (
            f"\n  the run also decided {', '.join(e.other_periods)} (give --period)"
            if e.other_periods
            else ""
        ),
        "  sources: " + ", ".join(f"{n} {h[:12]}" for n, h in e.sources.items()),
        "",
        f"features (window {e.window}):",
    ]
    types = e.feature_types
    for name, v in e.features.items():
        lines.append(f"  {name} = {_show(v, types.get(name))}")
    for name, v in e.lets.items():
        lines.append(f"  let {name} = {_show(v, types.get(name))}")
    if e.lists:
        lines.append(f"  on lists: {', '.join(e.lists)}")
    lines += ["", "conditions:"]
    for c in e.conditions:
        mark = "pass" if c["passed"] else "FAIL"
        lines.append(f"  [{mark}] {c['id']}: {c['text']}")
        if c.get("gap"):
            lines.append(f"         why: {c['gap']}")
        if c.get("ref"):
            lines.append(f"         ({c['ref']})")
    if e.members is None:
        lines += ["", "related members: not shown: the run's staged sources are gone"]
    elif e.members:
        lines += ["", "related members (the aggregates that decided):"]
        for m in e.members:
            lines += [f"  {line}" for line in m.lines()]
    lines += ["", "amount:"]
    lines += [f"  {s}" for s in e.amount_steps]
    lines.append(f"  claim: {format_yuan(e.claim_fen)} yuan")
    if not e.eligible:
        first = e.first_failing
        why = (
            f"condition {first['id']} failed"
            + (f" (by {first['gap']})" if first.get("gap") else "")
            if first
            else f"reason {e.reason}"
        )
        lines.append(f"  not eligible: {why}")
    a = e.allocation
    if e.counted or e.passed_over:
        lines += ["", "counted once (once_per):"]
        lines.append(f"  counted: {', '.join(e.counted) if e.counted else 'no one'}")
        for o in e.passed_over:
            lines.append(f"  not counted: {o['member']}: already counted for {o['by']}")
    lines += ["", "allocation:"]
    if a is None:
        lines.append("  nothing to allocate: no claim, and the ledger held nothing for this key")
    else:
        p = e.policy
        if p.group is None:
            lines.append("  stacking: not in a stacking group")
        else:
            lines.append(f"  stacking: group {p.group}: {_stacking(a.stacking)}")
        if p.budget_fen is None:
            lines.append("  budget: none: paid in full")
        else:
            lines.append(
                f"  budget: {format_yuan(p.budget_fen)} yuan per benefit period, "
                f"{p.over_budget} beyond it: {_budget(a.budget)}"
            )
        lines.append(
            f"  entitled: {format_yuan(a.amount_fen)} yuan (held before this run: {format_yuan(a.held_before_fen)})"
        )
    if e.paid_to is not None and a is not None and a.amount_fen > 0:
        lines.append(f"  paid to: {e.paid_to.to_text()}")
        if e.paid_to.ref:
            lines.append(f"         ({e.paid_to.ref})")
    lines += ["", "ledger:"]
    if not e.transfers:
        lines.append("  no transfers for this key")
    by_events = {d.transfer_id: d for d in e.by_events}
    for t in e.transfers:
        lines.append(
            f"  #{t.transfer_id} run {t.run_id} {t.kind:<10} {format_yuan(t.amount_fen):>16}  "
            f"{t.debit} -> {t.credit}  {t.hash[:12]}"
        )
        if t.transfer_id in by_events:
            lines.append(f"      decided by events (run {t.run_id} of `disburse events serve`):")
            lines += [f"        {ev.to_text()}" for ev in by_events[t.transfer_id].events]
    lines.append(f"  the ledger holds {format_yuan(e.amount_fen)} yuan for this key")
    paid = {k: sum(t.amount_fen for t in e.transfers if t.kind == k) for k in PAYMENT_KINDS}
    if any(paid.values()):
        open_fen = paid["instructed"] - paid["settled"] - paid["rejected"]
        lines.append(
            f"  paid: {format_yuan(paid['settled'])} yuan settled by the bank, "
            f"{format_yuan(open_fen)} instructed and awaiting its answer, "
            f"{format_yuan(paid['rejected'])} returned"
            + (
                f", {format_yuan(paid['offset'])} set against what the payee owed back"
                if paid["offset"]
                else ""
            )
        )
    if e.owed_back is not None:
        owed = e.owed_back
        lines.append(
            f"  owed back: {format_yuan(owed['clawed_back_fen'])} yuan clawed back after it "
            f"was paid; {format_yuan(owed['recovered_fen'])} paid back, "
            f"{format_yuan(owed['set_off_fen'])} set off against later grants, "
            f"{format_yuan(owed['owed_fen'])} still owed"
        )
    for o in e.objections:
        decided = f"{o['decision']}: {o['note']}" if o["decision"] else "not yet decided"
        lines.append(
            f"  objection {o['objection_id']} ({o['standing']}): {o['reason']} -> {decided}"
        )
    if not e.reference_agrees:
        lines.append(
            "  WARNING: the reference interpreter computes a different amount from the archived"
            " features; report this to the engine's maintainers"
        )
    return "\n".join(lines)


def _show(v: Any, t: str | None) -> str:
    """A value of the JSON form (Decimals and dates as text) as a person reads it."""
    if t in ("money", "number", "percent") and isinstance(v, str):
        return show_value(Decimal(v), t)
    return show_value(dt.date.fromisoformat(v) if t == "date" and isinstance(v, str) else v, t)
