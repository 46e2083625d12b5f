"""An aggregate member by member (issue 18.9): which related entities it looked at, whether
each counted, and for one that did not the first part of the body that failed, with its
values; picks in their order, those beyond the first N; bounded, in a fixed order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from eligibility import ast as A
from eligibility.cases import run_case
from eligibility.checked import CheckedPolicy
from eligibility.members import MemberRow, breakdown, decisive_aggregates, member_nodes, shown
from eligibility.parse import parse_expression
from jobs.catalogue import load_source_catalogue
from jobs.policies import load_policies
from ledgers.masking import mask_entity
from tests.minicity import person_ids

ROOT = Path(__file__).resolve().parents[2]
PSET = load_policies(load_source_catalogue(), [ROOT / "policies"])


def _agg(text: str) -> A.Aggregate:
    node = parse_expression(text)
    assert isinstance(node, A.Aggregate)
    return node


def _by_text(agg: A.Aggregate) -> dict[str, A.Node]:
    from eligibility.explain import source_text

    return {source_text(n): n for n in member_nodes(agg)}


def _row(agg: A.Aggregate, entity_id: str, values: dict[str, Any], **kw: Any) -> MemberRow:
    nodes = _by_text(agg)
    return MemberRow(entity_id, {id(nodes[k]): v for k, v in values.items()}, **kw)


def test_the_nodes_read_are_the_parts_that_may_decide_and_their_values() -> None:
    from eligibility.explain import source_text

    agg = _agg('count(hires, age_on(hired_in) <= 24 and (wage > 100 or listed("x")))')
    assert [source_text(n) for n in member_nodes(agg)] == [
        'age_on(hired_in) <= 24 and (wage > 100 or listed("x"))',
        "age_on(hired_in)",
        "wage",
        "age_on(hired_in) <= 24",
        'wage > 100 or listed("x")',
    ]
    assert shown(parse_expression("has_bank_account")) == [parse_expression("has_bank_account")]


def test_a_count_names_the_first_failing_part_with_its_values() -> None:
    agg = _agg("count(hires, age_on(hired_in) <= 24 and hired_in == first_insured_in)")
    both = "age_on(hired_in) <= 24 and hired_in == first_insured_in"
    rows = [
        _row(agg, "A1", {both: True, "age_on(hired_in) <= 24": True, "age_on(hired_in)": 20}),
        _row(agg, "A2", {both: False, "age_on(hired_in) <= 24": False, "age_on(hired_in)": 25}),
        _row(
            agg,
            "A3",
            {
                both: None,
                "age_on(hired_in) <= 24": True,
                "hired_in == first_insured_in": None,
                "hired_in": dt.date(2025, 3, 1),
                "first_insured_in": None,
            },
        ),
    ]
    b = breakdown(agg, {}, rows, value="1", read_by=["young"])
    assert b.lines() == [
        f"count(hires, {both}) = 1 (read by young)",
        "  3 related (hires): 1 counted, 2 not",
        "    A1: counted",
        "    A2: not counted: age_on(hired_in) <= 24 (age_on(hired_in) = 25)",
        "    A3: not counted: hired_in == first_insured_in is unknown "
        "(hired_in = 2025-03-01, first_insured_in = unknown)",
    ]
    assert b.to_json()["members"][1] == {
        "member": "A2",
        "counted": False,
        "text": "not counted: age_on(hired_in) <= 24 (age_on(hired_in) = 25)",
    }


def test_a_pick_lists_its_order_and_those_beyond_the_first_n() -> None:
    agg = _agg("count(earliest(hires, 2, hired_in, age_on(hired_in) <= 24))")
    where = "age_on(hired_in) <= 24"

    def r(
        eid: str, on: dt.date | None, ok: bool | None, age: int, picked: bool, rank: Any
    ) -> MemberRow:
        values = {"hired_in": on, where: ok, "age_on(hired_in)": age}
        return _row(agg, eid, values, picked=picked, rank=rank)

    rows = [
        r("B1", dt.date(2025, 1, 1), True, 20, True, 1),
        r("B2", dt.date(2025, 2, 1), True, 21, True, 2),
        r("B3", dt.date(2025, 3, 1), True, 22, False, 3),
        r("B4", dt.date(2025, 1, 1), False, 30, False, None),
        r("B5", None, None, 22, False, None),
    ]
    b = breakdown(agg, {}, rows, value="2", read_by=["young", "amount"], pick_n=2)
    assert b.lines()[1:] == [
        "  5 related (hires): 2 counted, 3 not",
        "    B1: picked #1 by hired_in 2025-01-01",
        "    B2: picked #2 by hired_in 2025-02-01",
        "    B3: not picked: beyond the first 2 (#3 by hired_in 2025-03-01)",
        "    B4: not picked: age_on(hired_in) <= 24 (age_on(hired_in) = 30)",
        "    B5: not picked: hired_in is unknown",
    ]


def test_a_sum_and_an_any_say_what_each_member_gave() -> None:
    total = _agg("sum(staff, wage)")
    rows = [_row(total, "C1", {"wage": 150000}), _row(total, "C2", {"wage": None})]
    b = breakdown(total, {id(total.body): "money"}, rows, value="1,500.00 yuan", read_by=["a"])
    assert [m.text for m in b.members] == ["adds 1,500.00 yuan", "adds nothing: wage is unknown"]
    assert b.lines()[1] == "  2 related (staff): 1 added, 1 not"
    some = _agg("any(staff, has_bank_account)")
    rows = [_row(some, "D1", {"has_bank_account": False})]
    assert breakdown(some, {}, rows, value="no", read_by=["a"]).members[0].text == (
        "does not hold: has_bank_account is no"
    )


def test_a_long_list_is_bounded_and_says_how_many_more() -> None:
    agg = _agg("count(hires)")
    rows = [_row(agg, f"E{i:03}", {}) for i in range(45)]
    b = breakdown(agg, {}, rows, value="45", read_by=["a"])
    assert len(b.members) == 20
    assert b.members[0].member == "E000"
    assert b.more == 25
    assert b.lines()[1] == "  45 related (hires): 45 counted, 0 not; the first 20 listed"
    assert b.lines()[-1] == "    and 25 more"
    assert b.to_json()["more"] == 25
    assert breakdown(agg, {}, [], value="0", read_by=["a"]).lines()[1] == (
        "  no hires: none to look at"
    )


def test_identifiers_and_text_values_are_shown_as_the_caller_masks_them() -> None:
    (person,) = person_ids(1)
    agg = _agg('count(guardians, relation == "parent")')
    rows = [_row(agg, person, {'relation == "parent"': False, "relation": person})]
    b = breakdown(agg, {}, rows, value="0", read_by=["a"], show_id=lambda v: mask_entity(v) or "")
    text = "\n".join(b.lines())
    assert person not in text
    assert person[:6] + "*" * 10 + person[-2:] in text


def test_a_recomputed_value_that_differs_is_a_warning() -> None:
    agg = _agg("count(hires)")
    b = breakdown(agg, {}, [_row(agg, "F1", {})], value="2", read_by=["a"], recomputed="1")
    assert "WARNING: these members give 1, the run recorded 2" in b.lines()[-1]


# --- through the compiled plan: the officers' worked examples ------------------------------


def _policy(pid: str) -> CheckedPolicy:
    return next(p for p in PSET.policies if p.id == pid)


def _flipped(policy: CheckedPolicy, name: str) -> list[str]:
    """The member lines of a refused worked example expected (wrongly) to be paid."""
    index, case = next((i, c) for i, c in enumerate(policy.spec.tests) if c.name == name)
    wrong = case.model_copy(
        update={"expect": case.expect.model_copy(update={"eligible": True, "reason": None})}
    )
    result = run_case(policy, wrong, index, PSET.catalogue, policy.spec.valid.from_)
    assert not result.passed
    assert f"    {result.members[0]}" in result.render(policy.file)
    return result.members


def test_a_failing_worked_example_names_the_member_that_did_not_count() -> None:
    lines = _flipped(
        _policy("job-expansion-grant"), "turning 25 in the month of hiring is past the limit"
    )
    assert lines[1:] == [
        "  1 related (hires): 0 counted, 1 not",
        "    330106200003012345: not picked: young_first_job: age <= oldest (age = 25, oldest = 24)",
    ]
    lines = _flipped(_policy("third-child-grant"), "a child who has turned 18 is no longer counted")
    assert lines == [
        "count(members, child(role, birth_on)) = 2 (read by three-children)",
        "  4 related (members): 2 counted, 2 not",
        '    330106197001011234: not counted: child: role == "member" (role = "head")',
        "    330106200803143456: not counted: child: add_months(born, 12 * child_under) > as_of "
        "(add_months(born, 12 * child_under) = 2026-03-14, as_of = 2026-03-15)",
        "    330106201909094567: counted",
        "    330106202602105678: counted",
    ]
    lines = _flipped(_policy("elderly-living-alone"), "living with a daughter")
    assert lines[1:] == [
        "  2 related (housemates): 2 counted, 0 not",
        "    330106194102011234: counted",
        "    330106197005052345: counted",
    ]


@pytest.mark.parametrize("name", ["not registered in the city's household register"])
def test_a_worked_example_without_members_says_there_were_none(name: str) -> None:
    lines = _flipped(_policy("elderly-living-alone"), name)
    assert lines == [
        "count(housemates) = 0 (read by lives-alone)",
        "  no housemates: none to look at",
    ]


def test_a_worked_example_that_leaves_the_relation_out_lists_no_members() -> None:
    """Found by the policy fuzz (seed 20261205, copy 2882): the staff line deleted from a
    failing example crashed policy check on the link columns the members would need."""
    policy = _policy("stay-at-post-grant")
    index, case = next((i, c) for i, c in enumerate(policy.spec.tests) if "staff" in c.given)
    given = {k: v for k, v in case.given.items() if k != "staff"}
    wrong = case.model_copy(
        update={
            "given": given,
            "expect": case.expect.model_copy(update={"eligible": True, "reason": None}),
        }
    )
    result = run_case(policy, wrong, index, PSET.catalogue, policy.spec.valid.from_)
    assert not result.passed
    assert result.members[-1] == "  no staff: none to look at"


def test_the_aggregates_that_decided_are_those_read_up_to_the_first_failure() -> None:
    from eligibility.explain import source_text

    def shown_reads(pid: str, passed: list[bool]) -> list[tuple[str, list[str]]]:
        reads = decisive_aggregates(_policy(pid), passed)
        return [(a if isinstance(a, str) else source_text(a), r) for a, r in reads]

    third = "third-child-grant"
    assert [r for _a, r in shown_reads(third, [False, False])] == [["three-children"]]
    assert [r for _a, r in shown_reads(third, [True, False])] == [
        ["three-children"],
        ["third-born-since"],
    ]
    expansion = shown_reads("job-expansion-grant", [True] * 5)
    counted = [(a, r) for a, r in expansion if a.startswith("count(")]
    assert counted[0][1] == ["took-on-young-people", "amount"]  # through the let `counted`
    assert shown_reads("job-expansion-grant", [False, False, True, True, True]) == [
        ("status", ["active"])
    ]
    graduates = shown_reads("graduate-hiring-subsidy", [True, False, True, True])
    assert ("graduates_hired", ["hired-graduates"]) in graduates
