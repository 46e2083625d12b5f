"""The durable-rules backend: its rulesets as plain data, exact at every threshold, a
private host that leaves nothing behind."""

from __future__ import annotations

import json
import operator
import random
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eligibility.backends.durable import (
    BATCH,
    Decider,
    compile_policy,
    decide_rows,
    durable_literal,
    fact,
    plain,
    representative,
)
from eligibility.checked import CheckedPolicy
from eligibility.reference import decide, env_for
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/golden/durable"
PSET = load_policies(load_source_catalogue(), [ROOT / "policies"])

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@pytest.mark.parametrize("policy", PSET.policies, ids=lambda p: p.id)
def test_ruleset_is_plain_data_equal_to_its_golden_file(
    policy: CheckedPolicy, update_golden: bool
) -> None:
    rs = compile_policy(policy)
    text = json.dumps(rs.definition, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{policy.id}.json"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path}: rerun with --update-golden"
    assert json.loads(text) == rs.definition  # nothing in it but data


def _decimals(places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(-(10**18), 10**18, places=places, allow_nan=False, allow_infinity=False)


NUMBERS = st.one_of(
    _decimals(0),
    _decimals(2),
    _decimals(10),
    st.decimals(-1, 1, places=10, allow_nan=False, allow_infinity=False),
    st.sampled_from([Decimal("0.055"), Decimal("0.2"), Decimal("1e-7"), Decimal(2**53 - 1)]),
)


@given(x=NUMBERS, lit=NUMBERS, nudge=st.sampled_from([0, 1, -1]))
def test_a_value_stands_where_it_does_against_any_literal(
    x: Decimal, lit: Decimal, nudge: int
) -> None:
    """Whatever the value and the literal, durable-rules' comparison of the doubles it is
    given decides as the exact comparison does, and it can read them."""
    x = x + Decimal(nudge).scaleb(-10)  # a hair either side of the literal, too
    if nudge and x == lit:
        x = lit + Decimal(nudge).scaleb(-10)
    lit_double = durable_literal(lit)
    if lit_double is None:  # the compiler compares such literals by order instead
        return
    rep = representative(x, lit)
    assert isinstance(rep, int) or plain(rep)
    for op, f in COMPARE.items():
        assert f(float(rep), float(lit_double)) == f(x, lit), (op, x, lit, rep)


@pytest.mark.parametrize(
    ("lit", "expected"),
    [
        (Decimal("0.055"), 0.055),
        (Decimal("30"), 30),
        (Decimal("1e-7"), None),  # 1e-07: durable-rules cannot read it
        (Decimal(2**53), None),
        ("active", "active"),
        (True, True),
    ],
)
def test_durable_literal(lit: Any, expected: Any) -> None:
    assert durable_literal(lit) == expected


def _population(policy: CheckedPolicy, n: int, seed: int) -> list[dict[str, Any]]:
    """Random rows from the policy's own worked examples: each value taken from one of them,
    or unknown."""
    rng = random.Random(seed)
    givens = [case.given for case in policy.spec.tests]
    names = sorted({k for g in givens for k in g if k not in ("lists", "accounts")})
    return [{k: rng.choice([*(g.get(k) for g in givens), None]) for k in names} for _ in range(n)]


@pytest.mark.parametrize("policy", PSET.policies, ids=lambda p: p.id)
def test_many_batches_decide_as_the_reference(policy: CheckedPolicy) -> None:
    """More rows than one assertion carries: every row's result is the reference's."""
    features = PSET.catalogue.features_of(policy.target)
    as_of = policy.spec.valid.from_
    rows = []
    rng = random.Random(k_seed(policy))
    for k, given_row in enumerate(_population(policy, 3 * BATCH + 7, seed=k_seed(policy))):
        values = {
            n: Decimal(str(v)) * (100 if features[n].type == "money" else 1)
            if v is not None and n in features and features[n].type in ("money", "number")
            else v
            for n, v in given_row.items()
        }
        env = env_for(policy, as_of, values, set())
        for node in policy.typed.aggregates:  # a relation's value, drawn by its type
            kind = policy.typed.type_of(node)
            env.aggregates[id(node)] = rng.choice(
                [None, *((True, False) if kind == "bool" else (0, 1, 2, 3, 25))]
            )
        rows.append((env, f"E{k}", f"P{k}"))
    decider = Decider({policy.id: compile_policy(policy)})
    got = decide_rows(decider, policy, rows)
    want = [decide(policy, *row) for row in rows]
    assert got == want
    # Every fact asserted, not one per outcome as decide_rows does: still the reference's.
    rs = decider.rulesets[policy.id]
    facts = [fact(rs, env, k) for k, (env, _e, _p) in enumerate(rows)]
    assert decider.masks(policy.id, facts) == [w["mask"] for w in want]
    assert any(g["eligible"] for g in got) or not policy.spec.tests


def k_seed(policy: CheckedPolicy) -> int:
    return sum(map(ord, policy.id))


def test_text_as_it_is_written() -> None:
    """Quotes, backslashes and Chinese in a value reach durable-rules intact."""
    policy = PSET.get("job-stabilisation-refund")
    rs = compile_policy(policy)
    field = next(iter(rs.definition[policy.id]["c0"]["all"][0]["m"]))
    decider = Decider({policy.id: rs})
    values = ["active", 'act"ive', "active\\", "活跃", "active ", "ACTIVE", "active\n"]
    masks = decider.masks(policy.id, [{"i": k, field: v} for k, v in enumerate(values)])
    assert [m & 1 for m in masks] == [1, 0, 0, 0, 0, 0, 0]


def test_a_private_host_leaves_nothing_running_or_stored() -> None:
    before = threading.active_count()
    policy = PSET.get("elderly-allowance")
    decider = Decider({policy.id: compile_policy(policy)})
    for _ in range(1100):  # past durable-rules' 1,024 live sessions, were they kept
        assert decider.masks(policy.id, [{"i": 0}]) == [0]
    assert threading.active_count() == before
