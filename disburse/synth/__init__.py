"""The synthetic population generator: every source of the catalogue, at any size.

`generate` writes one Parquet file per catalogue source and a manifest.  The
data are realistic enough to exercise real policies (layoff-gated refunds,
graduate hiring, child and elderly benefits, tax awards, credit exclusions)
and pass every catalogue rule, except for the bad rows injected on request,
which the manifest lists one by one.

Everything is vectorised (NumPy and Polars, no Python loop over rows) and
deterministic: the same parameters and seed give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from disburse.synth import _tables as T
from disburse.synth._calendar import Window, month_text
from disburse.synth._context import Context, IntArray, SynthError, blocks, city_list
from disburse.synth.careers import (
    build_employment,
    build_graduates,
    build_outside,
    build_person_accounts,
)
from disburse.synth.credit import build_credit_lists
from disburse.synth.enterprises import (
    build_enterprise_accounts,
    build_enterprise_si_accounts,
    build_enterprises,
    referenced_mask,
)
from disburse.synth.errors import Injection, inject
from disburse.synth.monthly import build_monthly, build_tax_ratings
from disburse.synth.population import build_households, build_population
from jobs.catalogue import Catalogue, Column, Source, load_source_catalogue

__all__ = ["GENERATED_SOURCES", "SynthError", "generate", "generator_fingerprint"]

GENERATED_SOURCES = (
    "enterprises",
    "enterprise_accounts",
    "enterprise_si_accounts",
    "tax_monthly",
    "tax_ratings",
    "social_security_monthly",
    "persons",
    "relations",
    "households",
    "household_members",
    "employment",
    "graduates",
    "person_accounts",
    "credit_lists",
)
MIN_MONTHS = 12  # the policies assess a whole year
DEFAULT_MONTHS = 24  # two years: last_12_months and previous_year both covered
# zstd at level 1 writes about a third faster than the default level and the
# files come out no larger on this data (little of it repeats at long range).
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1}


def generate(
    out: Path,
    *,
    enterprises: int,
    persons: int,
    seed: int,
    errors: float = 0.0,
    as_of: dt.date = dt.date(2026, 1, 1),
    months: int = DEFAULT_MONTHS,
    catalogue: Catalogue | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write `<out>/<source>.parquet` for every catalogue source and `<out>/manifest.json`.

    The window is the `months` calendar months ending with the month before
    `as_of`.  With `errors` > 0 about that share of each source's rows is made
    to break one catalogue rule each (every kind a source can break at least
    once); the manifest lists them.  Returns the manifest.
    """
    _check_arguments(enterprises, persons, seed, errors, months)
    catalogue = catalogue or load_source_catalogue()
    _check_catalogue(catalogue)
    report = progress or (lambda _message: None)
    ctx = _context(catalogue, seed, as_of, months)
    out = Path(out)
    with _small_pages():
        rows, injected = _write_sources(ctx, catalogue, out, errors, report, enterprises, persons)

    window = ctx.window
    manifest: dict[str, Any] = {
        "generator": "disburse.synth",
        "seed": seed,
        "as_of": as_of.isoformat(),
        "months": months,
        "window": {"first": month_text(window.first_month), "last": month_text(window.last_month)},
        "enterprises": enterprises,
        "persons": persons,
        "errors": errors,
        "rows": {name: rows[name] for name in catalogue.sources},
        "injected": [i.as_dict() for i in sorted(injected, key=lambda i: (i.source, i.row))],
        "rules": dict(sorted(Counter(i.rule for i in injected).items())),
    }
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    (out / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def generator_fingerprint(catalogue: Catalogue | None = None) -> str:
    """sha256 of what a generated city depends on besides its parameters: the generator's
    code and the source catalogue.

    Caches of generated cities key on it, so that a city an older generator made (one
    with every resident registered in the city, say) is not reused as if this one had.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update((catalogue or load_source_catalogue()).fingerprint().encode())
    return digest.hexdigest()


@contextmanager
def _small_pages() -> Iterator[None]:
    """Ask NumPy not to request transparent huge pages while generating.

    NumPy advises the kernel to back big arrays with 2 MB pages.  Where the
    kernel then compacts memory synchronously (`defrag: madvise`, the common
    default), each fresh 2 MB page can cost far more than its 512 small pages;
    the block-wise monthly grids reuse their memory anyway.  Measured on the
    2-core machine: system time of the monthly sources fell from 5 s to 1.6 s.
    The previous setting is restored afterwards.
    """
    import numpy._core.multiarray as multiarray

    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    if setter is None:
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(previous)


def _write_sources(
    ctx: Context,
    catalogue: Catalogue,
    out: Path,
    errors: float,
    report: Callable[[str], None],
    enterprises: int,
    persons: int,
) -> tuple[dict[str, int], list[Injection]]:
    """Generate, spoil and write every source; returns row counts and the bad rows."""
    out.mkdir(parents=True, exist_ok=True)
    rng_errors = {name: ctx.rng(f"errors:{name}") for name in GENERATED_SOURCES}

    injected: list[Injection] = []
    rows: dict[str, int] = {}
    pending: list[Future[None]] = []
    # One background writer: Polars encodes and compresses Parquet without the
    # GIL, so the next source is generated while the last one is written.  The
    # population is built in a thread of its own alongside the enterprises (NumPy
    # also works without the GIL); each part draws from its own random stream,
    # so the result does not depend on which finishes first.
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-writer") as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-population") as builder,
    ):
        population = builder.submit(build_population, ctx, persons)

        def emit(name: str, frame: pl.DataFrame, eligible: IntArray | None = None) -> None:
            frame = _conform(catalogue.sources[name], name, frame)
            frames, found = inject(
                catalogue, {name: frame}, {name: eligible}, errors, rng_errors[name]
            )
            frame = frames[name]
            injected.extend(found)
            rows[name] = frame.height
            pending.append(writer.submit(_write, frame, out / f"{name}.parquet"))
            report(f"{name}: {frame.height:,} rows" + (f", {len(found)} bad" if found else ""))

        # Without errors to inject, entity files need not wait for the sources
        # that refer to them: they go to the writer as soon as they exist.
        early = errors == 0

        def emit_blocks(
            name: str, frames: Iterable[pl.DataFrame], eligible: IntArray | None = None
        ) -> None:
            # A big source a block of rows at a time: each block is written as it is
            # made, unless rows are to be spoiled, which takes the source whole.
            if not early:
                emit(name, pl.concat(list(frames)), eligible)
                return
            with _Streamed(out, name, catalogue, writer) as streamed:
                for frame in frames:
                    streamed.write(frame)
            rows[name] = streamed.rows
            report(f"{name}: {streamed.rows:,} rows")

        ent = build_enterprises(ctx, enterprises)
        if early:
            emit("enterprises", take(ent, "frame"))
        accounts, account_holders = build_enterprise_accounts(ctx, ent)
        emit("enterprise_accounts", accounts)
        si_accounts, si_holders = build_enterprise_si_accounts(ctx, ent)
        emit("enterprise_si_accounts", si_accounts)
        if early:
            # Nothing to spoil: the months go to their files block by block, never
            # all held at once.
            with (
                _Streamed(out, "tax_monthly", catalogue, writer) as tax,
                _Streamed(out, "social_security_monthly", catalogue, writer) as insured,
            ):

                def both(t: pl.DataFrame, s: pl.DataFrame) -> None:
                    tax.write(t)
                    insured.write(s)

                monthly = build_monthly(ctx, ent, both)
            for streamed in (tax, insured):
                rows[streamed.name] = streamed.rows
                report(f"{streamed.name}: {streamed.rows:,} rows")
        else:
            monthly = build_monthly(ctx, ent)
            emit("tax_monthly", take(monthly, "tax"))
            emit("social_security_monthly", take(monthly, "social_security"))
        ratings, rated = build_tax_ratings(ctx, ent, monthly)
        emit("tax_ratings", ratings)
        pop = population.result()
        if early:
            emit_blocks("persons", blocks(pop.n, pop.persons_frame))
        emit_blocks("relations", blocks(pop.relation_count, pop.relations_frame))
        households = build_households(ctx, pop)
        if early:
            emit("households", take(households, "frame"))
        emit("household_members", take(households, "members"))
        outside = build_outside(ctx, enterprises)
        graduates = build_graduates(ctx, pop)
        emit("graduates", take(graduates, "frame"))
        employment = build_employment(ctx, pop, ent, monthly, outside, graduates)
        emit_blocks("employment", blocks(employment.count, employment.frame))
        person_holders, person_accounts = build_person_accounts(ctx, pop)
        emit_blocks("person_accounts", person_accounts)
        credit = build_credit_lists(ctx, ent, monthly, pop, outside)
        emit("credit_lists", take(credit, "frame"))

        if not early:
            # Entity rows may only be spoiled where nothing refers to them.
            ent_used = referenced_mask(
                ent.n,
                account_holders,
                si_holders,
                monthly.row_enterprise,
                rated,
                employment.local_employer,
                credit.enterprises,
            )
            emit("enterprises", ent.frame, np.flatnonzero(~ent_used))
            emit("households", households.frame, np.empty(0, dtype=np.int64))  # all have members
            pop_used = referenced_mask(
                pop.n,
                pop.related,
                households.person,
                graduates.person,
                employment.person,
                person_holders,
                credit.persons,
            )
            emit_blocks("persons", blocks(pop.n, pop.persons_frame), np.flatnonzero(~pop_used))
        for future in pending:
            future.result()
    return rows, injected


class _Streamed:
    """A source written to its Parquet file block by block, each block on the writer
    thread once the block before it is written (so at most two are held)."""

    def __init__(self, out: Path, name: str, catalogue: Catalogue, writer: ThreadPoolExecutor):
        self.name = name
        self.path = out / f"{name}.parquet"
        self.source = catalogue.sources[name]
        self.pool = writer
        self.rows = 0
        self.file: pq.ParquetWriter | None = None
        self.last: Future[None] | None = None

    def __enter__(self) -> _Streamed:
        return self

    def write(self, frame: pl.DataFrame) -> None:
        table = _conform(self.source, self.name, frame).to_arrow(
            compat_level=pl.CompatLevel.oldest()
        )
        self.rows += table.num_rows
        if self.last is not None:
            self.last.result()
        self.last = self.pool.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        if self.file is None:
            self.file = pq.ParquetWriter(self.path, table.schema, **PARQUET_OPTIONS)
        self.file.write_table(table)

    def __exit__(self, *exc: object) -> None:
        if self.last is not None:
            self.last.result()
        if self.file is not None:
            self.file.close()


def take(holder: Any, attr: str) -> pl.DataFrame:
    """The frame `holder.<attr>`, the attribute left empty: once the writer has written
    it, nothing keeps the frame (a city's sources are not all held at once)."""
    frame: pl.DataFrame = getattr(holder, attr)
    setattr(holder, attr, pl.DataFrame())
    return frame


def _check_arguments(enterprises: int, persons: int, seed: int, errors: float, months: int) -> None:
    if enterprises < 1 or persons < 1:
        raise SynthError("--enterprises and --persons must be at least 1")
    if seed < 0:
        raise SynthError(f"seed must be a non-negative integer, not {seed}")
    if not 0.0 <= errors <= 0.5:
        raise SynthError(f"errors is a share of rows between 0 and 0.5, not {errors}")
    if months < MIN_MONTHS:
        raise SynthError(
            f"months must be at least {MIN_MONTHS} (policies assess a whole year of tax and"
            f" social security), not {months}"
        )


def _check_catalogue(catalogue: Catalogue) -> None:
    unknown = sorted(set(catalogue.sources) - set(GENERATED_SOURCES))
    if unknown:
        raise SynthError(
            f"the catalogue has sources the generator cannot make: {', '.join(unknown)};"
            " add a builder for each under disburse/synth"
        )
    missing = sorted(set(GENERATED_SOURCES) - set(catalogue.sources))
    if missing:
        raise SynthError(f"the catalogue lacks sources the generator needs: {', '.join(missing)}")


def _context(catalogue: Catalogue, seed: int, as_of: dt.date, months: int) -> Context:
    list_name = city_list(catalogue)
    if list_name is None or list_name not in catalogue.lists:
        raise SynthError(
            "the generator needs the city's divisions: a list of 6-digit GB/T 2260 codes that"
            " enterprises.region_code names (in_list: regions), or a list named 'regions'"
            " under lists: in the source catalogue"
        )
    values = catalogue.lists[list_name].values
    codes = tuple(values)
    if not codes or not all(len(c) == 6 and c.isdigit() for c in codes):
        raise SynthError(f"list {list_name!r} must hold 6-digit division codes")
    # Values read "上城区 Shangcheng": the first word is the Chinese name.
    names = tuple((values[c].split() or [c])[0] for c in codes)
    home_codes, home_shares = _homes(catalogue, codes)
    return Context(
        seed=seed,
        window=Window(as_of, months),
        region_codes=codes,
        region_names=names,
        home_codes=home_codes,
        home_shares=home_shares,
    )


def _homes(
    catalogue: Catalogue, city: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Where residents from elsewhere are registered, and the share of each division.

    The divisions outside the city's prefectures that persons.region_code accepts: with
    a catalogue that holds persons to the city's list, nobody is registered elsewhere.
    """
    column = catalogue.sources["persons"].columns.get("region_code")
    prefectures = {c[:4] for c in city}
    codes = [
        c
        for c in T.OUTSIDE_REGIONS
        if c[:4] not in prefectures
        and T.HOME_PROVINCE_SHARE.get(c[:2], 0.0) > 0
        and (column is None or _accepts(catalogue, column, c))
    ]
    per_province = Counter(c[:2] for c in codes)
    shares = tuple(T.HOME_PROVINCE_SHARE[c[:2]] / per_province[c[:2]] for c in codes)
    return tuple(codes), shares


def _accepts(catalogue: Catalogue, column: Column, value: str) -> bool:
    """Whether a text value passes a column's value rules (allowed, pattern, in_list)."""
    if column.allowed is not None and value not in column.allowed:
        return False
    if column.pattern is not None and re.search(column.pattern, value) is None:
        return False
    return column.in_list is None or value in catalogue.lists[column.in_list].values


_DTYPE_OK: dict[str, Callable[[pl.DataType], bool]] = {
    "string": lambda d: d == pl.String,
    "date": lambda d: d == pl.String,
    "month": lambda d: d == pl.String,
    "int": lambda d: d.is_integer(),
    "bool": lambda d: d == pl.Boolean,
}


def _conform(source: Source, name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The catalogue's columns in the catalogue's order, each of the promised dtype."""
    missing = [c for c in source.columns if c not in frame.columns]
    if missing:
        raise SynthError(
            f"{name}: the generator makes no column {', '.join(missing)};"
            " teach disburse/synth to make it"
        )
    frame = frame.select(list(source.columns))
    for col_name, col in source.columns.items():
        dtype = frame.schema[col_name]
        if not _DTYPE_OK[col.type](dtype):
            raise SynthError(f"{name}.{col_name}: generated {dtype}, catalogue says {col.type}")
    return frame


def _write(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, **PARQUET_OPTIONS)
