"""Running a policy's scenarios: several nightly runs of one entity, posted to a scratch ledger.

A scenario (docs/policies.md, "Scenarios over several runs") is run on the same code
as `disburse run`, with a one-entity input in place of the staged sources:

* each run's decision is the decision table's row the batch would have for the entity
  (`eligibility.cases.entity_decision`: the worked example's one-row feature frame
  through the wide frame and `decisions_of_wide`);
* what the ledger holds is read as the run reads it (`ledgers.holdings.holdings`; a
  scratch ledger is read whole, so it keeps no snapshots), allocated as the run
  allocates (`jobs.allocate.allocate_policies`: budgets, `decide: once`), turned into
  the posted frame (`jobs.allocate.entitlements`) and posted
  (`ledgers.post.post_entitlements`: grants, adjustments, reversals, clawbacks),
  under a run recorded in the scratch ledger's `runs`; a policy with `back_pay` also
  decides its past periods as the run does (`jobs.allocate.allocate_back_pay`);
* a run with `paid: true` is followed by the bank paying what is payable
  (`ledgers.post.post_transfers`: instructed, then settled), so that a later decrease that
  the payable can no longer cover is a clawback, as in the real ledger.

Nothing of the transfer logic is written again here.  The scratch ledger is a SQLite
file in a temporary folder, a copy of one made once per process with the schema,
so a scenario costs its runs, not a migration.  A scenario runs its policy alone:
stacking against the other policies of its group is not part of it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from common.errors import Code, Problem, ProblemsError
from common.yamlsrc import Loc
from eligibility import CheckedCatalogue, CheckedPolicy, back_pay_dates
from eligibility.cases import BadValue, entity_decision
from eligibility.check import reading_policy
from eligibility.readings import scenario_reading
from eligibility.scenarios import (
    NightOutcome,
    Posted,
    RunResult,
    ScenarioResult,
    TotalResult,
    compare_run,
    merged_given,
    scenario_totals,
    total_over,
)
from eligibility.schema import Scenario, ScenarioRun
from jobs.allocate import Allocation, allocate_back_pay, allocate_policies, entitlements
from ledgers import accounts
from ledgers.balances import account_balances
from ledgers.db import LedgerError, init_schema, make_engine
from ledgers.holdings import holdings, posted_by_run, read_held
from ledgers.keys import LedgerKey
from ledgers.post import post_entitlements, post_transfers
from ledgers.runs import start_run

KIND = "scenario"  # the runs of a scratch ledger
# The scratch ledger's chain key: it protects nothing (the ledger is thrown away), but
# posting chains every transfer under a key, as the real ledger's.
SCRATCH_KEY = LedgerKey.from_secret(b"disburse scenario scratch ledger", "a scenario's scratch key")

_TEMPLATE: list[Path] = []  # the schema made once per process, copied for each scenario


def _template() -> Path:
    """An empty ledger with the schema, made on first use and removed at exit."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="disburse-scenarios-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "template.db"
        engine = make_engine(f"sqlite:///{path}", remember=False)
        try:
            init_schema(engine)
        finally:
            engine.dispose()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def run_scenarios(policy: CheckedPolicy, cat: CheckedCatalogue) -> list[ScenarioResult]:
    """Every scenario of a policy, in file order, each on its own scratch ledger; a value
    that cannot be read, or that the ledger refuses, is a positioned problem."""
    if not policy.spec.scenarios:
        return []
    results: list[ScenarioResult] = []
    problems: list[Problem] = []
    with tempfile.TemporaryDirectory(prefix="disburse-scenario-") as tmp:
        for i, scenario in enumerate(policy.spec.scenarios):
            label = f"scenario {scenario.name!r}"
            where: Loc
            code = Code.CASE_BAD_VALUE
            fix = "give values of the feature's kind (docs/policies.md, worked examples)"
            try:
                folder = Path(tmp) / str(i)
                results.append(_Scenario(policy, cat, i, scenario, folder).run())
                continue
            except BadValue as exc:
                where, message = exc.loc, f"{label}: {exc.message}"
            except LedgerError as exc:  # an id the ledger cannot hold, say
                where, code = ("scenarios", i), Code.SCENARIO_WRONG
                said = [x.strip() for x in exc.message.splitlines() if x.strip()]
                said = [x for x in said if not x.startswith("fix:")]
                message = f"{label} cannot be posted: {'; '.join(said)}"
                fix = "give identifiers of letters, digits, '.', '_' and '-' (the ledger's keys)"
            except (ValueError, TypeError, ArithmeticError) as exc:  # a value nothing foresaw
                where, message = ("scenarios", i), f"{label}: {exc}"
            line, col = policy.located.value_at(where)
            problems.append(Problem(policy.file, line, col, code, message, fix))
    if problems:
        raise ProblemsError(problems)
    return results


class _Scenario:
    """One scenario on its own scratch ledger in `folder`."""

    def __init__(
        self,
        policy: CheckedPolicy,
        cat: CheckedCatalogue,
        index: int,
        scenario: Scenario,
        folder: Path,
    ) -> None:
        reading = scenario_reading(policy.spec, index)
        self.policy = reading_policy(policy, cat, reading) if reading else policy
        self.cat = cat
        self.index = index
        self.scenario = scenario
        self.folder = folder

    def run(self) -> ScenarioResult:
        self.folder.mkdir(parents=True)
        db = self.folder / "ledger.db"
        shutil.copyfile(_template(), db)
        engine = make_engine(f"sqlite:///{db}", remember=False)
        try:
            located = self.policy.located
            at: Loc = ("scenarios", self.index)
            runs = []
            for k, run in enumerate(self.scenario.runs):
                outcome = self._night(engine, k, run)
                expected, actual = compare_run(run.expect, outcome)
                line, col = located.at((*at, "runs", k))
                runs.append(RunResult(k, outcome, expected, actual, line, col))
            with engine.connect() as conn:
                held = read_held(conn, [self.policy.id])
        finally:
            engine.dispose()
        mine = [(str(p), int(f)) for p, f in held.select("benefit_period", "net_fen").iter_rows()]
        totals = []
        for t, period, fen in scenario_totals(self.scenario):
            line, col = located.at((*at, "expect_total", *(() if t is None else (t,))))
            totals.append(TotalResult(period, fen, total_over(mine, period), line, col))
        line, col = located.at(at)
        return ScenarioResult(self.policy.id, self.scenario.name, runs, totals, line, col)

    def _decision(self, k: int, as_of: Any) -> pl.DataFrame:
        """The decision table's row of the entity as run `k` finds it."""
        given, source = merged_given(self.scenario, k)
        at: Loc = ("scenarios", self.index)
        try:
            return entity_decision(self.policy, given, self.cat, as_of, (*at, "given"))
        except BadValue as exc:
            # Point at the run that gave the value, if a run did.
            name = exc.loc[len(at) + 1] if len(exc.loc) > len(at) + 1 else None
            run = source.get(name) if isinstance(name, str) else None
            if run is not None:
                exc.loc = (*at, "runs", run, "given", *exc.loc[len(at) + 1 :])
            raise

    def _night(self, engine: Engine, k: int, run: ScenarioRun) -> NightOutcome:
        """Run `k` as `disburse run` decides, allocates and posts it."""
        policy, as_of = self.policy, run.as_of
        decision = self._decision(k, as_of)
        with engine.begin() as conn:
            run_id = start_run(conn, kind=KIND, as_of=as_of)
        known = holdings(engine, [policy.id])
        allocation = allocate_policies(decision, [policy], [], as_of, known.nonzero())
        past = [
            self._decision(k, day).with_columns(pl.lit(day, pl.Date).alias("as_of"))
            for _period, day in back_pay_dates(policy, as_of)
        ]
        if past:  # back-pay of past periods, as the run allocates it
            back = allocate_back_pay(pl.concat(past), [policy], [], known.frame)
            allocation = Allocation(
                pl.concat([allocation.entitlements, back.entitlements]), allocation.policies
            )
        frame = entitlements(allocation, [policy])
        post_entitlements(engine, frame, run_id, key=SCRATCH_KEY, known=known)
        row = decision.row(0, named=True)
        entity, period = str(row["entity_id"]), str(row["period"])
        with engine.connect() as conn:
            posted = posted_by_run(conn, run_id).filter(pl.col("entity") == entity)
            held = read_held(conn, [policy.id]).filter(
                (pl.col("entity") == entity) & (pl.col("benefit_period") == period)
            )
        if run.paid:
            self._pay(engine, run_id)
        return NightOutcome(
            as_of=as_of,
            period=period,
            eligible=bool(row["eligible"]),
            reason=row["reason"],
            payee=row["payee"],
            held_fen=int(held["net_fen"].sum()),
            transfers=tuple(
                Posted(r["kind"], r["net_fen"], r["payee"], r["benefit_period"])
                for r in posted.iter_rows(named=True)
            ),
            decided_by=(
                f"condition {row['reason']!r}" if row["reason"] else "every condition held"
            ),
        )

    def _pay(self, engine: Engine, run_id: int) -> None:
        """The bank pays every payee what is payable to it (a settled payment each)."""
        with engine.connect() as conn:
            payable = account_balances(conn, accounts.PAYABLE).filter(pl.col("balance_fen") > 0)
        if payable.height == 0:
            return
        # Instructed (payable to clearing), then settled (clearing to paid), as a payment
        # file and the bank's reply post them.
        instructed = payable.select(
            pl.lit("instructed").alias("kind"),
            pl.col("account").alias("debit_account"),
            pl.lit(accounts.CLEARING_BANK).alias("credit_account"),
            pl.col("balance_fen").alias("amount_fen"),
        )
        settled = instructed.with_columns(
            pl.lit("settled").alias("kind"),
            pl.lit(accounts.CLEARING_BANK).alias("debit_account"),
            pl.lit(accounts.PAID_BANK).alias("credit_account"),
        )
        post_transfers(engine, pl.concat([instructed, settled]), run_id, key=SCRATCH_KEY)
