"""What the staged sources of a run look like: their columns and rule-language types, and
which columns hold which entity's surrogate key."""

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


def staged_links(catalogue: Catalogue) -> dict[str, dict[str, str]]:
    """Per source: each surrogate-key column and the entity kind whose key it holds (an
    entity source's own key; one per reference to an entity source)."""
    out: dict[str, dict[str, str]] = {}
    for name, source in catalogue.sources.items():
        links: dict[str, str] = {}
        if source.entity is not None:
            links[Naming.sk(source.entity)] = source.entity
        for col in source.columns.values():
            for ref in col.references:
                entity = catalogue.sources[ref.source].entity
                if entity is not None:
                    links[catalogue.sk_column(ref)] = entity
        out[name] = links
    return out
