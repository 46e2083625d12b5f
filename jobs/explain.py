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
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from eligibility import (
    CheckedCatalogue,
    CheckedPolicy,
    explain_row,
    load_feature_catalogue,
    load_policy,
    show_value,
)
from jobs.catalogue import load_catalogue
from jobs.errors import JobError
from jobs.evaluate import decisions_of_wide
from jobs.ingest import sha256_file
from jobs.simulate import yuan
from jobs.staged import staged_columns
from ledgers.holdings import signed_amount
from ledgers.masking import mask_entity
from ledgers.schema import Run, SourceSnapshot, Transfer


def _archived(entry: dict[str, str], what: str, run_id: int) -> Path:
    path = Path(entry["file"])
    if not path.is_file():
        raise JobError(
            f"run {run_id}: the archived {what} {path} is missing",
            fix="restore the store folder (--store / $DISBURSE_STORE) from its backup",
        )
    if sha256_file(path) != entry["sha256"]:
        raise JobError(
            f"run {run_id}: the archived {what} {path} does not match its recorded sha256",
            fix="it was changed after the run; restore it from the backup",
        )
    return path


def archived_policies(
    run: Any, policy_ids: list[str] | None = None
) -> tuple[CheckedCatalogue, dict[str, CheckedPolicy]]:
    """The feature catalogue and the policies (all, or `policy_ids`) as the run read them,
    from its archived copies, each checked against its recorded sha256."""
    archive = json.loads(run.archive_json)
    source_cat = load_catalogue()
    keys = {name: src.key for name, src in source_cat.sources.items()}
    features_file = _archived(archive["catalogue"], "feature catalogue", run.run_id)
    cat = load_feature_catalogue(features_file, staged_columns(source_cat), keys)
    wanted = sorted(archive["policies"]) if policy_ids is None else policy_ids
    policies = {
        pid: load_policy(_archived(archive["policies"][pid], "policy file", run.run_id), cat)
        for pid in wanted
    }
    return cat, policies


def archived_decisions(run: Any) -> pl.LazyFrame:
    """A run's whole decision table (every policy and entity, refusals with their reasons),
    derived from its wide archive: the run itself keeps only the claims."""
    archive = json.loads(run.archive_json)
    _cat, policies = archived_policies(run)
    scans = {
        target: pl.scan_parquet(_archived(entry, f"{target} features", run.run_id))
        for target, entry in archive["features"].items()
    }
    return decisions_of_wide(scans, list(policies.values()), run.as_of)


def _find_run(engine: Engine, policy_id: str, run_id: int | None) -> Any:
    cols = Run.__table__
    with engine.connect() as conn:
        if run_id is not None:
            row = conn.execute(select(cols).where(Run.run_id == run_id)).first()
            if row is None or row.archive_json is None:
                raise JobError(
                    f"run {run_id} is not a nightly run with recorded decisions",
                    fix="`disburse ledger summary` lists the runs; give one that reached 'evaluated'",
                )
            return row
        rows = conn.execute(
            select(cols)
            .where(Run.kind == "nightly", Run.archive_json.is_not(None))
            .order_by(Run.run_id.desc())
        ).all()
    for row in rows:
        if policy_id in json.loads(row.archive_json).get("policies", {}):
            return row
    raise JobError(
        f"no nightly run has evaluated policy {policy_id!r}",
        fix="check the policy id (`disburse policy check` lists them), or run the night first",
    )


def explain(
    engine: Engine, policy_id: str, entity: str, *, run_id: int | None = None, unmask: bool = False
) -> dict[str, Any]:
    """The explanation of (policy, entity) in a run (default: the latest that evaluated it)."""
    run = _find_run(engine, policy_id, run_id)
    archive = json.loads(run.archive_json)
    if policy_id not in archive["policies"]:
        raise JobError(
            f"run {run.run_id} did not evaluate policy {policy_id!r} "
            f"(it evaluated {', '.join(sorted(archive['policies']))})",
            fix="leave out --run to take the latest run that evaluated it",
        )
    show = (lambda v: v) if unmask else mask_entity
    cat, policies = archived_policies(run, [policy_id])
    policy = policies[policy_id]
    wide_entry = archive["features"][policy.target]
    wide_rows = (
        pl.scan_parquet(_archived(wide_entry, f"{policy.target} features", run.run_id))
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
    detail = explain_row(policy, cat, run.as_of, wide).to_json()
    allocation = (
        pl.scan_parquet(run.allocation_file)
        .filter((pl.col("policy_id") == policy_id) & (pl.col("entity") == entity))
        .collect()
    )
    alloc = allocation.row(0, named=True) if allocation.height else None
    t = Transfer.__table__
    with engine.connect() as conn:
        snaps = conn.execute(
            select(SourceSnapshot.source, SourceSnapshot.sha256)
            .where(SourceSnapshot.run_id == run.run_id)
            .order_by(SourceSnapshot.source)
        ).all()
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
            )
            .where(
                t.c.policy_id == policy_id,
                t.c.benefit_period == d["period"],
                t.c.entity == entity,
            )
            .order_by(t.c.transfer_id)
        ).all()
    failed = next((c for c in detail["conditions"] if not c["passed"]), None)
    spec = policy.spec
    return {
        "run_id": run.run_id,
        "as_of": run.as_of.isoformat(),
        "policy": {
            "id": policy_id,
            "title": spec.title,
            "basis": {
                "document": spec.basis.document,
                "issued_by": spec.basis.issued_by,
                "issued_on": spec.basis.issued_on.isoformat() if spec.basis.issued_on else None,
            },
            "sha256": archive["policies"][policy_id]["sha256"],
        },
        "sources": {s.source: s.sha256 for s in snaps},
        "entity": show(entity),
        "target": policy.target,
        "benefit_period": d["period"],
        "window": detail["window"],
        "eligible": bool(d["eligible"]),
        "reason": d["reason"],
        "first_failing": failed,
        "claim_fen": int(d["amount_fen"]),
        "computed_fen": detail["amount_fen"],
        "features": detail["features"],
        "feature_types": detail["feature_types"],
        "lets": detail["lets"],
        "lists": detail["lists"],
        "conditions": detail["conditions"],
        "amount_steps": detail["amount_steps"],
        "reference_agrees": detail["reference_agrees"],
        "allocation": None
        if alloc is None
        else {
            "claim_fen": alloc["claim_fen"],
            "held_before_fen": alloc["held_fen"],
            "amount_fen": alloc["amount_fen"],
            "stacking": alloc["stacking"],
            "budget": alloc["budget"],
        },
        "payee": show(alloc["payee"]) if alloc else None,
        "transfers": [
            {
                "transfer_id": r.transfer_id,
                "run_id": r.run_id,
                "kind": r.kind,
                "debit": _mask_account(r.debit_account, show),
                "credit": _mask_account(r.credit_account, show),
                "amount_fen": r.amount_fen,
                "hash": r.hash,
            }
            for r in transfers
        ],
        "amount_fen": sum(int(r.signed) for r in transfers),
    }


def _mask_account(address: str, show: Any) -> str:
    head, _, rest = address.partition(":")
    return f"{head}:{show(rest)}" if head in ("payable", "receivable") else address


def _stacking(s: str | None) -> str:
    if s is None:
        return "not in a stacking group"
    if s == "alone":
        return "the only claim of its group"
    if s == "won":
        return "the highest claim of its group: it is the one paid"
    if s.startswith("lost:"):
        return f"lost to {s[5:]}, which pays more (or ranks higher) for this entity"
    if s.startswith("held:"):
        return f"the entity already holds {s[5:]} of the same group for an overlapping period"
    return s


def _budget(b: str | None) -> str:
    return {
        None: "paid in full (no budget limit applied)",
        "within": "within the budget: paid in full",
        "pro_rata": "over budget: scaled pro rata so that exactly the budget left is paid",
        "rank:paid": "over budget: paid in full, by its rank",
        "rank:partial": "over budget: the last claim to fit, paid what was left of the budget",
        "rank:unpaid": "over budget: ranked after the budget ran out",
        "refused": "over budget and the policy refuses: nothing new paid",
    }.get(b, b or "")


def render_explanation(e: dict[str, Any]) -> str:
    """The explanation as plain text for the auditor."""
    p = e["policy"]
    basis = p["basis"]
    lines = [
        f"{e['entity']} under {p['id']} ({p['title']}), benefit period {e['benefit_period']}",
        f"  basis: {basis['document']}"
        + (f"; {basis['issued_by']}" if basis["issued_by"] else "")
        + (f", {basis['issued_on']}" if basis["issued_on"] else ""),
        f"  run {e['run_id']} as of {e['as_of']}; policy file sha256 {p['sha256']}",
        "  sources: " + ", ".join(f"{n} {h[:12]}" for n, h in e["sources"].items()),
        "",
        f"features (window {e['window']}):",
    ]
    types = e["feature_types"]
    for name, v in e["features"].items():
        lines.append(f"  {name} = {_show(v, types.get(name))}")
    for name, v in e["lets"].items():
        lines.append(f"  let {name} = {_show(v, types.get(name))}")
    if e["lists"]:
        lines.append(f"  on lists: {', '.join(e['lists'])}")
    lines += ["", "conditions:"]
    for c in e["conditions"]:
        mark = "pass" if c["passed"] else "FAIL"
        lines.append(f"  [{mark}] {c['id']}: {c['text']}")
        if c.get("gap"):
            lines.append(f"         why: {c['gap']}")
        if c.get("ref"):
            lines.append(f"         ({c['ref']})")
    lines += ["", "amount:"]
    lines += [f"  {s}" for s in e["amount_steps"]]
    lines.append(f"  claim: {yuan(e['claim_fen'])} yuan")
    if not e["eligible"]:
        first = e["first_failing"]
        why = (
            f"condition {first['id']} failed"
            + (f" (by {first['gap']})" if first.get("gap") else "")
            if first
            else f"reason {e['reason']}"
        )
        lines.append(f"  not eligible: {why}")
    a = e["allocation"]
    lines += ["", "allocation:"]
    if a is None:
        lines.append("  nothing to allocate: no claim, and the ledger held nothing for this key")
    else:
        lines.append(f"  stacking: {_stacking(a['stacking'])}")
        lines.append(f"  budget: {_budget(a['budget'])}")
        lines.append(
            f"  entitled: {yuan(a['amount_fen'])} yuan (held before this run: {yuan(a['held_before_fen'])})"
        )
    lines += ["", "ledger:"]
    if not e["transfers"]:
        lines.append("  no transfers for this key")
    for t in e["transfers"]:
        lines.append(
            f"  #{t['transfer_id']} run {t['run_id']} {t['kind']:<10} {yuan(t['amount_fen']):>16}  "
            f"{t['debit']} -> {t['credit']}  {t['hash'][:12]}"
        )
    lines.append(f"  the ledger holds {yuan(e['amount_fen'])} yuan for this key")
    if not e["reference_agrees"]:
        lines.append(
            "  WARNING: the reference interpreter computes a different amount from the archived"
            " features; report this to the engine's maintainers"
        )
    return "\n".join(lines)


def _show(v: Any, t: str | None) -> str:
    """A value of the JSON form (Decimals and dates as text) as a person reads it."""
    if t in ("money", "number") and isinstance(v, str):
        return show_value(Decimal(v), t)
    return show_value(dt.date.fromisoformat(v) if t == "date" and isinstance(v, str) else v, t)
