"""The source catalogue (policies/sources.yaml) as pydantic models.

The catalogue is the contract with the bureaus: which files arrive, which
columns they hold, of which type, keyed how, and which rows are refused.
Ingest, the synthetic generator and the delivery documentation all read it;
none of them names a column in code that the catalogue does not declare.
"""

from __future__ import annotations

import re
from functools import cached_property
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import Code, Problem, ProblemsError, did_you_mean
from common.yamlsrc import At, Located, load_yaml_file, schema_problems
from eligibility import Naming

ColumnType = Literal["string", "int", "bool", "date", "month"]
INT64_MAX: Final = 2**63 - 1
# The bound of a money column that declares none: 100 billion yuan in one row.  A row is
# one enterprise's month (or one person's record); no single row of a subsidy engine's
# sources comes near it, and 92,233 such rows still sum within 64 bits.
DEFAULT_MAX_FEN: Final = 10**13
CheckKind = Literal["uscc", "resident_id", "uscc_or_resident_id"]
# An entity kind an entity source defines (enterprise, person, household, certificate):
# the feature catalogue's entities name these sources.
Entity = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(_Strict):
    """A foreign key to an entity source; adds that entity's integer surrogate key."""

    source: str
    as_: str | None = Field(default=None, alias="as")
    on_missing: Literal["quarantine", "keep"] = "quarantine"


class Column(_Strict):
    """One column of a delivered file."""

    type: ColumnType
    description: str
    required: bool = False
    min: int | None = None
    max: int | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    check: CheckKind | None = None
    in_list: str | None = None
    not_before: str | None = None
    references: tuple[Reference, ...] = ()
    pii: Literal["id", "account", "name"] | None = None
    unit: Literal["fen"] | None = None
    max_fen: int | None = Field(default=None, ge=1, le=INT64_MAX)

    @property
    def money_bound(self) -> int | None:
        """The largest amount, in fen either side of zero, one row of a money column may hold
        (`max_fen`, else `DEFAULT_MAX_FEN`); None for other columns."""
        if self.unit != "fen":
            return None
        return self.max_fen if self.max_fen is not None else DEFAULT_MAX_FEN

    @field_validator("references", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if isinstance(value, str):
            return ({"source": value},)
        if isinstance(value, dict):
            return (value,)
        return value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
        return value

    @model_validator(mode="after")
    def _rules_fit_type(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type != "int":
            raise At(
                ("min" if self.min is not None else "max",), "min and max apply to int columns only"
            )
        textual = {
            "allowed": self.allowed,
            "pattern": self.pattern,
            "check": self.check,
            "in_list": self.in_list,
        }
        given = [k for k, v in textual.items() if v is not None]
        if self.type != "string" and given:
            raise At(
                (given[0],), "allowed, pattern, check and in_list apply to string columns only"
            )
        if self.not_before is not None and self.type not in ("date", "month"):
            raise At(("not_before",), "not_before applies to date and month columns only")
        if self.unit is not None and self.type != "int":
            raise At(("unit",), "unit: fen applies to int columns only (money is whole fen)")
        if self.max_fen is not None and self.unit != "fen":
            raise At(("max_fen",), "max_fen applies to money columns only: add unit: fen")
        return self


class Source(_Strict):
    """One delivered file: its columns, key and, for entity sources, the entity it defines."""

    bureau: str
    description: str
    key: tuple[str, ...]
    columns: dict[str, Column]
    entity: Entity | None = None

    @model_validator(mode="after")
    def _key_and_order(self) -> Source:
        for i, name in enumerate(self.key):
            if name not in self.columns:
                raise At(
                    ("key", i),
                    f"key column {name!r} is not among the columns",
                    did_you_mean(name, sorted(self.columns), "the columns"),
                )
        for name, col in self.columns.items():
            if col.not_before is not None and col.not_before not in self.columns:
                raise At(
                    ("columns", name, "not_before"),
                    f"{name}: not_before names unknown column {col.not_before!r}",
                    did_you_mean(col.not_before, sorted(self.columns), "the columns"),
                )
        if self.entity is not None and len(self.key) != 1:
            raise At(
                ("key",),
                "an entity source has a key of exactly one column",
                "key: [its identifying column]",
            )
        for name, col in self.columns.items():
            # Names say the unit: a column in fen is money, and money is bounded (max_fen).
            if name.endswith("_fen") and col.unit != "fen":
                raise At(
                    ("columns", name),
                    f"{name}: a column in fen is money: declare unit: fen",
                    "add unit: fen (and max_fen: the most one row can hold)",
                )
        return self

    @property
    def entity_column(self) -> str:
        """The identifying column of an entity source."""
        return self.key[0]


class RefList(_Strict):
    """A list of allowed codes (e.g. regions), with the quarantine rule for others."""

    rule: str
    description: str
    values: dict[str, str]


class Catalogue(_Strict):
    """The whole source catalogue."""

    version: Literal[1]
    lists: dict[str, RefList] = {}
    sources: dict[str, Source]

    @model_validator(mode="after")
    def _cross_references(self) -> Catalogue:
        entity_sources = sorted(n for n, s in self.sources.items() if s.entity is not None)
        for sname, source in self.sources.items():
            for cname, col in source.columns.items():
                at = ("sources", sname, "columns", cname)
                if col.in_list is not None and col.in_list not in self.lists:
                    raise At(
                        (*at, "in_list"),
                        f"{sname}.{cname}: unknown list {col.in_list!r}",
                        did_you_mean(col.in_list, sorted(self.lists), "the lists")
                        if self.lists
                        else "declare the list under lists:",
                    )
                for ref in col.references:
                    target = self.sources.get(ref.source)
                    if target is None or target.entity is None:
                        raise At(
                            (*at, "references"),
                            f"{sname}.{cname}: references {ref.source!r}, which is not an entity "
                            "source",
                            did_you_mean(ref.source, entity_sources, "the entity sources")
                            + " (an entity source says entity: enterprise or person)",
                        )
        try:
            self.schedule().prepare()
        except CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise At(
                ("sources", exc.args[1][0]),
                f"sources reference each other in a circle ({cycle}): each entity source is "
                "staged before the sources that reference it, so a source cannot reference "
                "itself or a source that references it back",
                "remove one of the references (references: on a column)",
            ) from None
        return self

    def depends_on(self, name: str) -> set[str]:
        """The entity sources whose keys the source `name` references (staged before it)."""
        return {ref.source for col in self.sources[name].columns.values() for ref in col.references}

    def schedule(self) -> TopologicalSorter[str]:
        """The sources as a graph by their references, for ingesting in a valid order."""
        graph: TopologicalSorter[str] = TopologicalSorter()
        for name in self.ordered():
            graph.add(name, *sorted(self.depends_on(name)))
        return graph

    @cached_property
    def entity_sources(self) -> dict[str, str]:
        """Entity name -> the source that defines it."""
        return {s.entity: name for name, s in self.sources.items() if s.entity is not None}

    def sk_column(self, ref: Reference) -> str:
        """The surrogate-key column a reference adds (`enterprise_sk`, `related_person_sk`)."""
        if ref.as_ is not None:
            return ref.as_
        entity = self.sources[ref.source].entity
        assert entity is not None  # a reference names an entity source
        return Naming.sk(entity)

    def fingerprint(self) -> str:
        """sha256 of the catalogue's content (not its file's bytes): same rules, same hash."""
        import hashlib

        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()

    def ordered(self) -> list[str]:
        """Source names, entity sources first, for listing them (ingest follows `schedule`)."""
        return sorted(self.sources, key=lambda n: (self.sources[n].entity is None, n))


def default_catalogue_path() -> Path:
    """The shipped catalogue: policies/sources.yaml beside the packages, or installed data."""
    from jobs.paths import policies_dir

    return policies_dir() / "sources.yaml"


def load_source_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate a source catalogue; every problem is reported with its position."""
    located = load_yaml_file(path or default_catalogue_path())
    try:
        return Catalogue.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsError(_problems(located, exc)) from None


def _problems(located: Located, exc: ValidationError) -> list[Problem]:
    def fix(loc: tuple[str | int, ...]) -> str:
        allowed = _allowed_keys(loc)
        return did_you_mean(str(loc[-1]), allowed, "allowed keys") if allowed else "remove it"

    return schema_problems(
        located,
        exc,
        codes=(Code.SOURCE_UNKNOWN_KEY, Code.SOURCE_MISSING_KEY, Code.SOURCE_BAD_VALUE),
        unknown_key_fix=fix,
        format_hint="see the comment at the top of the file",
    )


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    depth = len(loc)
    if depth == 1:
        return list(Catalogue.model_fields)
    if depth >= 2 and loc[0] == "sources":
        if depth == 3:
            return list(Source.model_fields)
        if depth == 5:
            return [f.alias or n for n, f in Column.model_fields.items()]
    return []
