"""A nightly run's summary and outcome: typed, read back from the record and the ledger,
as JSON (`disburse run --json`) and as plain text for finance reading the terminal or the log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from common.money import format_yuan
from jobs.allocate import BudgetUse, PolicyAllocation
from jobs.errors import JobError
from jobs.progress import PhaseTiming
from ledgers import runs
from ledgers.checkpoints import read_checkpoint, run_checkpoint_path
from ledgers.runs import RunState

# The entitlement changes a run posts, in the order finance reads them, and those that
# take money back (shown negative).
CHANGE_KINDS = ("grant", "increase", "decrease", "reversal", "clawback")
TAKEN_BACK = frozenset({"decrease", "reversal", "clawback"})


def changes_of(policies: Mapping[str, PolicySummary]) -> dict[str, tuple[int, int]]:
    """Per kind of entitlement change posted (grant, increase, decrease, reversal, clawback):
    the transfers and their signed effect in fen (+ to payees, - back), in CHANGE_KINDS order."""
    out: dict[str, tuple[int, int]] = {}
    for p in policies.values():
        for kind, v in p.posted.items():
            if kind not in CHANGE_KINDS:
                continue
            n, fen = out.get(kind, (0, 0))
            sign = -1 if kind in TAKEN_BACK else 1
            out[kind] = (n + v.transfers, fen + sign * v.amount_fen)
    return {k: out[k] for k in CHANGE_KINDS if k in out}


@dataclass(frozen=True)
class Posted:
    """The transfers of one kind a run posted for a policy."""

    transfers: int
    amount_fen: int

    def to_json(self) -> dict[str, int]:
        """As plain data."""
        return {"transfers": self.transfers, "amount_fen": self.amount_fen}


@dataclass(frozen=True)
class PolicySummary:
    """One policy in a run: its allocation (absent if the run only posted for it) and what
    the run posted, per kind of transfer."""

    allocation: PolicyAllocation | None
    posted: Mapping[str, Posted] = field(default_factory=dict)

    @property
    def transfers(self) -> int:
        """Transfers posted for the policy, of every kind."""
        return sum(p.transfers for p in self.posted.values())

    def to_json(self) -> dict[str, Any]:
        """The allocation's fields and "posted"."""
        own = self.allocation.to_json() if self.allocation is not None else {}
        return {**own, "posted": {k: p.to_json() for k, p in self.posted.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PolicySummary:
        """From `to_json`'s form."""
        rest = {k: v for k, v in data.items() if k != "posted"}
        posted = {
            k: Posted(int(v["transfers"]), int(v["amount_fen"])) for k, v in data["posted"].items()
        }
        return cls(_allocation(rest) if rest else None, posted)


def _allocation(data: Mapping[str, Any]) -> PolicyAllocation:
    budget = data.get("budget")
    return PolicyAllocation(**{**data, "budget": BudgetUse(**budget) if budget else None})


@dataclass(frozen=True)
class SourceCount:
    """Rows a run read of one source, and how many it quarantined."""

    rows: int
    quarantined: int

    def to_json(self) -> dict[str, int]:
        """As plain data."""
        return {"rows": self.rows, "quarantined": self.quarantined}


@dataclass(frozen=True)
class Totals:
    """A run's totals over its policies."""

    entitled: int
    entitled_fen: int
    transfers: int

    def to_json(self) -> dict[str, int]:
        """As plain data."""
        return {
            "entitled": self.entitled,
            "entitled_fen": self.entitled_fen,
            "transfers": self.transfers,
        }


@dataclass(frozen=True)
class CheckpointRef:
    """The checkpoint a run wrote (`ledgers.checkpoints`): its file and the head it signed."""

    file: str
    transfer_id: int
    hash: str
    transfers: int
    amount_fen: int
    key_id: str

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {
            "file": self.file,
            "transfer_id": self.transfer_id,
            "hash": self.hash,
            "transfers": self.transfers,
            "amount_fen": self.amount_fen,
            "key_id": self.key_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckpointRef:
        """From `to_json`'s form."""
        return cls(
            file=str(data["file"]),
            transfer_id=int(data["transfer_id"]),
            hash=str(data["hash"]),
            transfers=int(data["transfers"]),
            amount_fen=int(data["amount_fen"]),
            key_id=str(data["key_id"]),
        )


@dataclass(frozen=True)
class RunSummary:
    """What a run read, allocated and posted; recorded on the run when it completes."""

    run_id: int
    as_of: dt.date
    sources: Mapping[str, SourceCount]
    policies: Mapping[str, PolicySummary]
    checkpoint: CheckpointRef | None = None

    @property
    def totals(self) -> Totals:
        """Entitlements and their amount over every policy, and the transfers posted."""
        allocations = [p.allocation for p in self.policies.values() if p.allocation]
        return Totals(
            entitled=sum(a.entitled for a in allocations),
            entitled_fen=sum(a.entitled_fen for a in allocations),
            transfers=sum(p.transfers for p in self.policies.values()),
        )

    @property
    def changes(self) -> dict[str, tuple[int, int]]:
        """Per kind of entitlement change the run posted: `changes_of` its policies."""
        return changes_of(self.policies)

    def to_json(self) -> dict[str, Any]:
        """As `disburse run --json` prints it (beside the outcome's own fields)."""
        return {
            "changes": {
                k: {"transfers": n, "signed_fen": fen} for k, (n, fen) in self.changes.items()
            },
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "sources": {name: s.to_json() for name, s in self.sources.items()},
            "policies": {pid: p.to_json() for pid, p in self.policies.items()},
            "totals": self.totals.to_json(),
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        """From `to_json`'s form, as recorded on the run."""
        return cls(
            run_id=int(data["run_id"]),
            as_of=dt.date.fromisoformat(data["as_of"]),
            sources={
                name: SourceCount(int(s["rows"]), int(s["quarantined"]))
                for name, s in data["sources"].items()
            },
            policies={pid: PolicySummary.from_json(p) for pid, p in data["policies"].items()},
            # Summaries recorded before checkpoints existed have none.
            checkpoint=CheckpointRef.from_json(data["checkpoint"])
            if data.get("checkpoint")
            else None,
        )


def run_summary(engine: Engine, run_id: int) -> RunSummary:
    """A run's summary from what it recorded: the allocation per policy and the transfers it posted."""
    run = runs.get_run(engine, run_id)
    if run is None:
        raise JobError(f"there is no run {run_id}", fix="give the id of a recorded run")
    allocation: Mapping[str, Any] = run.counts.get("allocation", {})
    posted: dict[str, dict[str, Posted]] = {}
    for p in runs.posted_by(engine, run_id):
        # A past period's back-pay is its own line (`<policy>@<period>`), as allocated.
        past = f"{p.policy_id}@{p.benefit_period}"
        kinds = posted.setdefault(past if past in allocation else p.policy_id, {})
        before = kinds.get(p.kind, Posted(0, 0))
        kinds[p.kind] = Posted(before.transfers + p.transfers, before.amount_fen + p.amount_fen)
    policies = {
        pid: PolicySummary(_allocation(rep), posted.get(pid, {}))
        for pid, rep in sorted(allocation.items())
    }
    for pid, kinds in posted.items():
        policies.setdefault(pid, PolicySummary(None, kinds))
    path = run_checkpoint_path(engine, run_id)
    checkpoint = None
    if path is not None and path.is_file():
        cp = read_checkpoint(path)
        checkpoint = CheckpointRef(
            str(path), cp.transfer_id, cp.hash, cp.transfers, cp.amount_fen, cp.key_id
        )
    return RunSummary(
        run_id=run_id,
        as_of=run.as_of,
        sources={
            name: SourceCount(c.rows, c.quarantined)
            for name, c in runs.source_counts(engine, run_id).items()
        },
        policies=policies,
        checkpoint=checkpoint,
    )


@dataclass
class RunOutcome:
    """What `disburse run` did: the run it finished, its summary, the runs it resumed or abandoned."""

    run_id: int
    state: RunState
    as_of: dt.date
    summary: RunSummary
    timings: dict[str, PhaseTiming] = field(default_factory=dict)
    resumed: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """What `disburse run --json` prints."""
        return {
            "run_id": self.run_id,
            "state": self.state.value,
            "as_of": self.as_of.isoformat(),
            "resumed": self.resumed,
            "abandoned": self.abandoned,
            "phases": {name: t.to_json() for name, t in self.timings.items()},
            "peak_rss_mb": self.peak_rss_mb,
            **self.summary.to_json(),
        }

    def to_text(self) -> str:
        """The outcome as lines of text."""
        return render_run(self)


def _budget_line(b: BudgetUse) -> str:
    line = (
        f"    budget {format_yuan(b.budget_fen)} ({b.rule}): held before {format_yuan(b.held_before_fen)}, "
        f"new claims {format_yuan(b.new_claims_fen)}, paid {format_yuan(b.new_paid_fen)}"
    )
    if b.outcome == "refused":
        line += (
            f"\n    REFUSED: the new claims exceed the budget left ({format_yuan(b.remaining_fen)}) "
            f"by {format_yuan(b.refused_fen)} yuan; nothing new was paid. Raise the budget or change the policy."
        )
    elif b.outcome in ("pro_rata", "rank"):
        line += f"\n    over budget: claims cut by {b.outcome} to the {format_yuan(b.remaining_fen)} left"
    return line


def render_run(out: RunOutcome) -> str:
    """The `disburse run` outcome as lines of text."""
    lines = [f"run {out.run_id} as of {out.as_of.isoformat()}: {out.state.value}"]
    if out.resumed:
        lines.append(f"  finished interrupted run(s): {', '.join(map(str, out.resumed))}")
    if out.abandoned:
        lines.append(
            f"  abandoned undecided run(s) (nothing had been posted): {', '.join(map(str, out.abandoned))}"
        )
    summary = out.summary
    if summary.sources:
        rows = sum(s.rows for s in summary.sources.values())
        quarantined = sum(s.quarantined for s in summary.sources.values())
        lines.append(f"  sources: {rows:,} rows, {quarantined:,} quarantined")
    lines.append("")
    lines.append(
        f"  {'policy':<30}{'period':>8}{'eligible':>11}{'entitled':>11}{'amount (yuan)':>20}{'transfers':>11}"
    )
    for pid, p in summary.policies.items():
        a = p.allocation
        name = f"{pid.split('@')[0]} back-pay" if "@" in pid else pid
        lines.append(
            f"  {name:<30}{a.benefit_period if a else '':>8}{a.eligible if a else 0:>11,}"
            f"{a.entitled if a else 0:>11,}{format_yuan(a.entitled_fen if a else 0):>20}{p.transfers:>11,}"
        )
        if a is not None and a.lost_stacking:
            lines.append(f"    {a.lost_stacking:,} claims lost to another policy of the group")
        if a is not None and a.budget is not None:
            lines.append(_budget_line(a.budget))
        for kind, v in p.posted.items():
            sign = "-" if kind in TAKEN_BACK else ""
            lines.append(
                f"    posted {kind}: {v.transfers:,} for {sign}{format_yuan(v.amount_fen)} yuan"
            )
    totals = summary.totals
    changes = summary.changes
    if changes:
        lines.append("")
        lines.append("  what changed tonight, to sign off:")
        for kind in CHANGE_KINDS:
            if kind in changes:
                n, fen = changes[kind]
                shown = f"{'-' if fen < 0 else '+'}{format_yuan(abs(fen))}"
                lines.append(f"    {kind + 's':<12}{n:>10,} {shown:>22} yuan")
        net = sum(fen for _n, fen in changes.values())
        lines.append(
            f"    {'net':<12}{'':>10} {('-' if net < 0 else '+') + format_yuan(abs(net)):>22} yuan"
        )
    lines.append("")
    lines.append(
        f"  total: {totals.entitled:,} entitlements, {format_yuan(totals.entitled_fen)} yuan; "
        f"{totals.transfers:,} transfers posted by this run"
    )
    if summary.checkpoint is not None:
        cp = summary.checkpoint
        lines.append(f"  checkpoint: {cp.file}")
        lines.append(
            f"    head transfer {cp.transfer_id} hash {cp.hash}; {cp.transfers:,} transfers "
            f"moving {format_yuan(cp.amount_fen)} yuan; signed by key {cp.key_id}"
        )
        lines.append(
            "    file a copy away from the ledger: `disburse audit verify --checkpoint FILE` "
            "proves the ledger still extends it"
        )
    if out.timings:
        lines.append(
            "  phases: "
            + "; ".join(f"{n} {round(t.seconds, 3):.1f} s" for n, t in out.timings.items())
            + f"; peak memory {out.peak_rss_mb:,.0f} MiB"
        )
    return "\n".join(lines)


__all__ = [
    "CHANGE_KINDS",
    "CheckpointRef",
    "PolicySummary",
    "Posted",
    "RunOutcome",
    "RunSummary",
    "SourceCount",
    "Totals",
    "changes_of",
    "render_run",
]
