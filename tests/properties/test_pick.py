"""earliest/latest over a relation: the compiled plan (a running count in key order over each
owner's links) and the reference interpreter (a sort of the members) pick the same related
entities, whatever their keys, ties, unknown keys and conditions; and, for a policy that
counts them once (`once_per`), whichever were counted for another entitlement already
(left out before the pick, so that the next in order takes their place)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eligibility import ast as A
from eligibility import load_policy
from eligibility.cases import run_cases
from eligibility.plan import Naming, param_values, run_dates
from eligibility.reference import COUNTED_ELSEWHERE, Env, aggregate_over
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies

CAT = load_policies(load_source_catalogue()).catalogue
AS_OF = dt.date(2026, 3, 1)
MONTHS = [dt.date(2025, m, 1) for m in (2, 5, 5, 9)]  # 5 twice: ties are common

member = st.fixed_dictionaries(
    {
        "hired_in": st.one_of(st.none(), st.sampled_from(MONTHS)),
        "left_in": st.one_of(st.none(), st.sampled_from(MONTHS)),
        "graduated_on": st.one_of(st.none(), st.just(dt.date(2024, 6, 30))),
        "counted_elsewhere": st.booleans(),
    }
)


def _policy_text(order: str, n: int, members: list[dict[str, Any]], once: bool) -> str:
    spec: dict[str, Any] = {
        "policy": "pick",
        "title": "pick",
        "basis": {"document": "test"},
        "target": "enterprise",
        "valid": {"from": dt.date(2026, 1, 1)},
        "assess": "previous_year",
        "benefit_period": "year",
        "unbanked": "hold",
        "params": {"most": [{"from": dt.date(2026, 1, 1), "value": n, "ref": "Art. 1"}]},
        "eligible": [{"id": "any", "when": "as_of >= policy_start"}],
        "amount": {
            "formula": f"1 fen + sum({order}(hires, most, hired_in, is_missing(left_in) or "
            "left_in > hired_in), 100 yuan if is_missing(graduated_on) else 150 yuan)"
        },
        "tests": [
            {
                "name": "members",
                "as_of": AS_OF,
                "given": {"hires": members},
                "expect": {"eligible": True, "amount": "0 yuan"},
            }
        ],
    }
    if once:  # members counted for another entitlement are left out before the pick
        spec["once_per"] = {"relation": "hires"}
    else:
        for m in members:
            m.pop("counted_elsewhere")
    return yaml.safe_dump(spec, sort_keys=False)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.sampled_from(["earliest", "latest"]),
    n=st.integers(1, 4),
    raw=st.lists(member, max_size=7),
    ids=st.permutations(list("ABCDEFG")),
    once=st.booleans(),
)
def test_compiled_and_reference_pick_the_same(
    tmp_path_factory: Any,
    order: str,
    n: int,
    raw: list[dict[str, Any]],
    ids: list[str],
    once: bool,
) -> None:
    members = [{"id": i, **m} for i, m in zip(ids, raw, strict=False)]
    path = Path(tmp_path_factory.mktemp("pick")) / "p.yaml"
    path.write_text(_policy_text(order, n, [dict(m) for m in members], once))
    policy = load_policy(path, CAT)
    (result,) = run_cases(policy, CAT)
    (agg,) = [a for a in policy.typed.aggregates if a.pick is not None]
    assert isinstance(agg, A.Aggregate)
    envs = [
        Env(
            typed=policy.typed,
            values={
                "entity_id": m["id"],
                "graduated_on": m["graduated_on"],
                Naming.link("hired_in"): m["hired_in"],
                Naming.link("left_in"): m["left_in"],
                COUNTED_ELSEWHERE: m["counted_elsewhere"],
            },
            dates=run_dates(policy, AS_OF).names(),
            params=param_values(policy, AS_OF),
        )
        for m in members
    ]
    want_fen = int(1 + aggregate_over(agg, envs, once=once))
    got = result.actual["amount"]
    assert got == f"{want_fen // 100:,}.{want_fen % 100:02d} yuan", (members, order, n, once)
