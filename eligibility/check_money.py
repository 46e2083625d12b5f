"""Checking the money as written and where it goes: a money literal below a fen, a
negative amount, tier brackets reversed or overlapping (errors); a rate over 100% and
money times a bare number (warnings); the payee's accounts a policy pays to, and a
payee who may have no account."""

from __future__ import annotations

from decimal import Decimal

from common.errors import Code, article, did_you_mean
from common.money import to_fen
from common.yamlsrc import Loc
from eligibility import ast as A
from eligibility.amounts import (
    Amount,
    Bracket,
    Formula,
    MarginalTiers,
    StepTiers,
    Table,
)
from eligibility.checked import (
    CheckedCatalogue,
    payee_kind,
)
from eligibility.schema import PolicyFile
from eligibility.typecheck import Checker


def careful(c: Checker, spec: PolicyFile, cat: CheckedCatalogue, roots: list[A.Node]) -> None:
    """What a careful officer wants pointed out: a money literal below a fen (an error), a
    rate over 100% and money times a bare number that reads like a percentage (warnings),
    and a payee who may have no bank account when the policy does not say what then."""
    nodes = [n for root in roots for n in A.walk(root)]
    for n in nodes:
        if isinstance(n, A.Literal):
            _literal_written(c, n)
        elif isinstance(n, A.Binary) and n.op == "*":
            for money, bare in ((n.left, n.right), (n.right, n.left)):
                computed = c.typed.types.get(id(money)) == "money" and not isinstance(
                    money, A.Literal
                )
                if computed and _bare_percentish(bare):
                    c.warn(
                        bare,
                        Code.BARE_MULTIPLIER,
                        f"money times the bare number {bare.span.text}: {bare.span.text} times the amount",
                        f"if a rate is meant, write {bare.span.text}%",
                    )
    _unbanked(c, spec, cat, nodes)


def _literal_written(c: Checker, n: A.Literal) -> None:
    """Money below a fen (an error) and a rate over 100% (a warning), as written."""
    if not isinstance(n.value, Decimal):
        return
    if n.unit in ("yuan", "fen"):
        fen = to_fen(n.value, n.unit)
        if fen != fen.to_integral_value():
            c.problem(
                n,
                Code.AMOUNT_WRITTEN_WRONG,
                f"{n.span.text} is not a whole number of fen",
                "money is paid in whole fen: write at most two decimals of yuan",
            )
    elif "%" in n.span.text and n.value > 1:
        c.warn(
            n,
            Code.RATE_OVER_100,
            f"{n.span.text} is a rate over 100%",
            "check the rate against the policy text; write it as the text says",
        )


def _bare_percentish(node: A.Node) -> bool:
    """A number written without % or unit that reads like a percentage: 5 to 100 in steps
    of 5 (`premium * 50`); a count of months or quarters (12, 3) does not."""
    return (
        isinstance(node, A.Literal)
        and node.unit == ""
        and isinstance(node.value, Decimal)
        and "%" not in node.span.text
        and 5 <= node.value <= 100
        and node.value % 5 == 0
    )


BANK_FEATURE = "has_bank_account"


def payment_accounts(c: Checker, spec: PolicyFile, cat: CheckedCatalogue) -> tuple[str, ...]:
    """The payee's accounts the policy pays to, in order of preference: `payment: {account:
    a}` or `coalesce(a, b, ...)`; the catalogue's first account of the payee if not said."""
    kind = payee_kind(spec, cat)
    if kind is None or kind not in cat.spec.entities:
        return ()  # refused as such
    declared = list(cat.spec.entities[kind].accounts)
    if spec.payment is None:
        return tuple(declared[:1])
    loc: Loc = ("payment", "account")
    node = c.parse(loc, spec.payment.account)
    if node is None:
        return ()
    if isinstance(node, A.Name):
        names: tuple[A.Node, ...] = (node,)
    elif isinstance(node, A.Call) and node.func == "coalesce" and node.args:
        names = node.args
    else:
        names = ()
    if not names or not all(isinstance(n, A.Name) for n in names):
        c.problem(
            node,
            Code.UNKNOWN_ACCOUNT,
            "payment: account is one account's name, or coalesce() of several",
            f"write, as in account: coalesce({', '.join(declared) or 'basic, other'}): the "
            "first of them on file is paid",
        )
        return ()
    chosen = []
    for n in names:
        assert isinstance(n, A.Name)
        if n.name not in declared:
            c.problem(
                n,
                Code.UNKNOWN_ACCOUNT,
                f"{article(kind)} has no account {n.name!r}",
                did_you_mean(n.name, declared, f"the {kind}'s accounts")
                if declared
                else f"declare the {kind}s' accounts under entities: {kind}: accounts: in "
                "features.yaml",
            )
        elif n.name not in chosen:
            chosen.append(n.name)
    return tuple(chosen)


def _unbanked(c: Checker, spec: PolicyFile, cat: CheckedCatalogue, nodes: list[A.Node]) -> None:
    payee = payee_kind(spec, cat)
    if payee is None:
        return  # refused as such
    if spec.unbanked is not None or BANK_FEATURE not in cat.features_of(payee):
        return
    if any(isinstance(n, A.Name) and n.name == BANK_FEATURE for n in nodes):
        return
    payee_where = spec.payee.where if spec.payee != "self" else None
    if payee_where is not None and BANK_FEATURE in payee_where:
        return
    c.warn_at(
        ("payee",) if spec.payee != "self" else ("eligible",),
        Code.UNBANKED_PAYEE,
        "a payee may have no bank account on record, and the policy does not say what then",
        f"add the condition {BANK_FEATURE}, or `unbanked: hold` (the entitlement stays "
        "payable until an account is on record)",
    )


def amounts_written(c: Checker, amount: Amount) -> None:
    """An amount written out as a negative number is an error; so are tier brackets whose
    bounds, written out, are reversed or overlap."""
    base = amount.base
    written: list[A.Node] = []
    if isinstance(base, Formula):
        written = [base.expr]
    elif isinstance(base, Table):
        written = [v for _w, v in base.rows] + ([base.otherwise] if base.otherwise else [])
    elif isinstance(base, StepTiers):
        written = [b.value for b in base.brackets]
    for node in written:
        if isinstance(node, A.Literal) and isinstance(node.value, Decimal) and node.value < 0:
            c.problem(
                node,
                Code.AMOUNT_WRITTEN_WRONG,
                f"the amount {node.span.text} is negative: nothing would be paid",
                "write the amount paid, 0 yuan or more; take money back with a correction",
            )
    if isinstance(base, StepTiers | MarginalTiers):
        _brackets_in_order(c, base.brackets)


def _bound(node: A.Node | None) -> Decimal | None:
    if isinstance(node, A.Literal) and isinstance(node.value, Decimal):
        return to_fen(node.value, node.unit) if node.unit else node.value
    return None


def _brackets_in_order(c: Checker, brackets: tuple[Bracket, ...]) -> None:
    low = Decimal("-Infinity")
    spans: list[tuple[Decimal, Decimal, Bracket]] = []
    for b in brackets:
        lo, hi = _bound(b.low), _bound(b.high)
        if (b.low is not None and lo is None) or (b.high is not None and hi is None):
            return  # bounds computed per entity: nothing to compare in the file
        start = lo if lo is not None else low
        end = hi if hi is not None else Decimal("Infinity")
        if start >= end:
            c.problem(
                b.low or b.value,
                Code.BRACKETS_OVERLAP,
                "a bracket's `from` is not below its `to`: no value falls in it",
                "write each bracket as from (included) below to (excluded)",
            )
            continue
        for other_start, other_end, other in spans:
            if start < other_end and other_start < end:
                c.problem(
                    b.low or b.value,
                    Code.BRACKETS_OVERLAP,
                    f"this bracket overlaps the one on line {(other.low or other.value).span.line}",
                    "brackets do not overlap: each value falls in one bracket at most",
                )
                break
        spans.append((start, end, b))
