"""The rule language: policy files, expressions, compilers and explanations.

Knows nothing of databases.  This module is its public face, what `jobs` uses:

    load a policy set   load_feature_catalogue, load_policy, load_policy_set, PolicySet
    check               check_files (with the officers' worked examples), CheckReport
    dates               run_dates, is_active, back_pay_dates
    compile (Polars)    wide_plans, decisions_of_wide, result_inputs, RESULT_SCHEMA,
                        paid_to (the account each payee is paid to)
    explain             explain_row, RowExplanation, show_value

Names are loaded on first use, so that importing a part that needs no Polars
(`eligibility.ast`, the reference interpreter) does not import Polars.

Inside, one home per idea:

    ast        the expression tree (frozen, positioned)         parse      text -> tree
    functions  the function registry, one entry per function    amounts    kinds of amount
    types      the types and how they combine                   schema     the file formats
    typecheck  typing expressions                               checked    what checking yields
    catalogue  the feature catalogue, checked                   check      a policy, checked
    plan       dates, parameters, needs, column names           cases      worked examples
    reference  the reference interpreter                        explain    plain words
    check_params, check_money, check_examples   a policy's parameters, its money as
               written and where it is paid, its worked examples and scenarios
    readings   a variant's or an example's settings over the file's
    backends/polars   everything that emits Polars
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, typed, for mypy
    from eligibility.backends.polars import COUNTED_SCHEMA as COUNTED_SCHEMA
    from eligibility.backends.polars import ID_COLUMN as ID_COLUMN
    from eligibility.backends.polars import RESULT_SCHEMA as RESULT_SCHEMA
    from eligibility.backends.polars import Scan as Scan
    from eligibility.backends.polars import decisions_of_wide as decisions_of_wide
    from eligibility.backends.polars import explain_members as explain_members
    from eligibility.backends.polars import paid_to as paid_to
    from eligibility.backends.polars import result_inputs as result_inputs
    from eligibility.backends.polars import wide_plans as wide_plans
    from eligibility.backends.polars import with_counted as with_counted
    from eligibility.cases import CaseResult as CaseResult
    from eligibility.catalogue import load_feature_catalogue as load_feature_catalogue
    from eligibility.check import load_policy as load_policy
    from eligibility.checked import CheckedCatalogue as CheckedCatalogue
    from eligibility.checked import CheckedPolicy as CheckedPolicy
    from eligibility.checked import payee_kind as payee_kind
    from eligibility.explain import RowExplanation as RowExplanation
    from eligibility.explain import explain_row as explain_row
    from eligibility.explain import show_value as show_value
    from eligibility.members import MemberBreakdown as MemberBreakdown
    from eligibility.plan import Naming as Naming
    from eligibility.plan import RunDates as RunDates
    from eligibility.plan import back_pay_dates as back_pay_dates
    from eligibility.plan import is_active as is_active
    from eligibility.plan import once_aggregate as once_aggregate
    from eligibility.plan import once_scope as once_scope
    from eligibility.plan import run_dates as run_dates
    from eligibility.policyset import CheckReport as CheckReport
    from eligibility.policyset import PolicySet as PolicySet
    from eligibility.policyset import check_files as check_files
    from eligibility.policyset import load_policy_set as load_policy_set
    from eligibility.policyset import policy_files as policy_files
    from eligibility.types import SOURCE_TYPES as SOURCE_TYPES
    from eligibility.types import Type as Type


_EXPORTS = {
    "PolicySet": "eligibility.policyset",
    "CheckReport": "eligibility.policyset",
    "check_files": "eligibility.policyset",
    "load_policy_set": "eligibility.policyset",
    "policy_files": "eligibility.policyset",
    "load_feature_catalogue": "eligibility.catalogue",
    "load_policy": "eligibility.check",
    "CheckedCatalogue": "eligibility.checked",
    "CheckedPolicy": "eligibility.checked",
    "payee_kind": "eligibility.checked",
    "CaseResult": "eligibility.cases",
    "Naming": "eligibility.plan",
    "RunDates": "eligibility.plan",
    "is_active": "eligibility.plan",
    "back_pay_dates": "eligibility.plan",
    "once_aggregate": "eligibility.plan",
    "once_scope": "eligibility.plan",
    "run_dates": "eligibility.plan",
    "RowExplanation": "eligibility.explain",
    "explain_row": "eligibility.explain",
    "show_value": "eligibility.explain",
    "MemberBreakdown": "eligibility.members",
    "SOURCE_TYPES": "eligibility.types",
    "Type": "eligibility.types",
    "COUNTED_SCHEMA": "eligibility.backends.polars",
    "ID_COLUMN": "eligibility.backends.polars",
    "RESULT_SCHEMA": "eligibility.backends.polars",
    "paid_to": "eligibility.backends.polars",
    "Scan": "eligibility.backends.polars",
    "decisions_of_wide": "eligibility.backends.polars",
    "explain_members": "eligibility.backends.polars",
    "result_inputs": "eligibility.backends.polars",
    "wide_plans": "eligibility.backends.polars",
    "with_counted": "eligibility.backends.polars",
}

__all__ = [
    "COUNTED_SCHEMA",
    "ID_COLUMN",
    "RESULT_SCHEMA",
    "SOURCE_TYPES",
    "CaseResult",
    "CheckReport",
    "CheckedCatalogue",
    "CheckedPolicy",
    "MemberBreakdown",
    "Naming",
    "PolicySet",
    "RowExplanation",
    "RunDates",
    "Scan",
    "Type",
    "back_pay_dates",
    "check_files",
    "decisions_of_wide",
    "explain_members",
    "explain_row",
    "is_active",
    "load_feature_catalogue",
    "load_policy",
    "load_policy_set",
    "once_aggregate",
    "once_scope",
    "policy_files",
    "result_inputs",
    "run_dates",
    "show_value",
    "wide_plans",
    "with_counted",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eligibility' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
