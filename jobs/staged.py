"""What the staged sources of a run look like: their columns and rule-language types."""

from __future__ import annotations

from eligibility import SOURCE_TYPES, Naming, Type
from jobs.catalogue import Catalogue


def staged_columns(catalogue: Catalogue) -> dict[str, dict[str, Type]]:
    """Per source: every staged column (catalogue columns and surrogate keys) and its type."""
    out: dict[str, dict[str, Type]] = {}
    for name, source in catalogue.sources.items():
        cols: dict[str, Type] = {c: SOURCE_TYPES[col.type] for c, col in source.columns.items()}
        if source.entity is not None:
            cols[Naming.sk(source.entity)] = "count"
        for col in source.columns.values():
            for ref in col.references:
                cols[catalogue.sk_column(ref)] = "count"
        out[name] = cols
    return out
