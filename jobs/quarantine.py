"""Reading the quarantine back, for the people who correct the source files."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select

from jobs.catalogue import Catalogue, Source
from jobs.errors import JobError
from ledgers.masking import MASKERS, mask_id
from ledgers.runs import latest_run_id
from ledgers.schema import QuarantinedRow


def quarantined_rows(
    engine: Engine,
    catalogue: Catalogue,
    *,
    run_id: int | None = None,
    source: str | None = None,
    rule: str | None = None,
    limit: int = 20,
    unmask: bool = False,
) -> list[dict[str, Any]]:
    """Quarantined rows of a run (the latest ingest if none is given), personal data masked."""
    with engine.connect() as conn:
        if run_id is None:
            run_id = latest_run_id(conn)
            if run_id is None:
                raise JobError(
                    "no run has been recorded in this database", fix="run `disburse ingest` first"
                )
        table = QuarantinedRow.__table__
        q = select(table).where(table.c.run_id == run_id)
        if source is not None:
            if source not in catalogue.sources:
                raise JobError(f"unknown source {source!r}", fix="`disburse sources` lists them")
            q = q.where(table.c.source == source)
        if rule is not None:
            q = q.where(table.c.rule == rule)
        q = q.order_by(table.c.source, table.c.row_no).limit(limit)
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        rec = r._mapping
        row = json.loads(rec["row_json"])
        value = rec["value"]
        src = catalogue.sources.get(rec["source"])
        if not unmask and src is not None:
            for cname, col in src.columns.items():
                if col.pii is not None and row.get(cname) is not None:
                    row[cname] = MASKERS[col.pii](row[cname])
            value = _masked_value(src, rec["column_name"], value)
        out.append(
            {
                "run_id": rec["run_id"],
                "source": rec["source"],
                "row_no": rec["row_no"],
                "column": rec["column_name"],
                "rule": rec["rule"],
                "value": value,
                "row": row,
            }
        )
    return out


def _masked_value(source: Source, column: str | None, value: str | None) -> str | None:
    """The failing value as printed: each personal part masked by its column's rule.

    A rule on one column (a bad check character) failed that column's value; a
    duplicate key failed the key, recorded as its columns and their values each
    joined by "+" (`person_id+related_person_id+relation`), so each part is masked
    by the rule of the column it came from.  Should the parts not line up (a value
    holding a "+" itself), the whole value is masked as an identity number: the
    safe side.
    """
    if value is None or column is None:
        return value
    names = column.split("+")
    rules = [c.pii if (c := source.columns.get(n)) is not None else None for n in names]
    if not any(rules):
        return value
    parts = value.split("+")
    if len(parts) != len(names):
        return mask_id(value)
    return "+".join(
        MASKERS[rule](part) or "" if rule is not None else part
        for rule, part in zip(rules, parts, strict=True)
    )
