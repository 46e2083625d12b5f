"""The Polars backend: everything that turns checked policies into Polars plans.

    base       the representation of values (money as Decimal fen, ...) and the
               compilation context
    expr       expression nodes -> `pl.Expr`, one rule per node kind
    functions  one rule per function of the registry (`eligibility.functions`)
    amounts    one rule per kind of amount (`eligibility.amounts`)
    features   the feature frame of an entity kind from the sources (group-bys, joins)
    policy     a policy's conditions, amount and result as columns of that frame
    members    an owner's aggregates member by member, for explanations
    decisions  the wide frame of each entity kind, and the long decision table
    accounts   which of its accounts each payee is paid to

It reads sources only through a `Scan` (a source name -> LazyFrame function), so it
knows nothing of where the batch keeps its files.  It uses only operations narwhals
also offers (tests/unit/test_polars_backend.py), so that the same plans can run on a
distributed engine.
"""

from eligibility.backends.polars.accounts import paid_to
from eligibility.backends.polars.base import DEC, CompileError, Context, as_decimal, literal
from eligibility.backends.polars.decisions import (
    ID_COLUMN,
    RESULT_SCHEMA,
    decisions_of_wide,
    wide_plans,
)
from eligibility.backends.polars.expr import compile_expr
from eligibility.backends.polars.features import COUNTED_SCHEMA, Scan, entity_frame, with_counted
from eligibility.backends.polars.members import explain_members
from eligibility.backends.polars.policy import evaluate_frame, result_inputs

__all__ = [
    "COUNTED_SCHEMA",
    "DEC",
    "ID_COLUMN",
    "RESULT_SCHEMA",
    "CompileError",
    "Context",
    "Scan",
    "as_decimal",
    "compile_expr",
    "decisions_of_wide",
    "entity_frame",
    "evaluate_frame",
    "explain_members",
    "literal",
    "paid_to",
    "result_inputs",
    "wide_plans",
    "with_counted",
]
