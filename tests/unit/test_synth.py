"""The synthetic population generator: valid, realistic, deterministic, and spoiled on request.

The reference check below (`rule_failures`) applies every rule of the source
catalogue the way its header describes them, independently of ingest: a clean
population must pass all of them, and with errors requested each injected row
must fail exactly the rule the manifest names.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from common.identifiers import (
    USCC_ALPHABET,
    is_valid_resident_id,
    is_valid_uscc,
    org_code_check_char,
    resident_id_valid_expr,
    uscc_valid_expr,
)
from disburse.synth import GENERATED_SOURCES, SynthError, generate, generator_fingerprint
from disburse.synth.errors import injectable
from jobs.catalogue import Catalogue, load_source_catalogue
from jobs.validate import quarantine_rules

AS_OF = dt.date(2026, 1, 1)
ENTERPRISES, PERSONS = 1_000, 10_000
USCC_SHAPE = f"^[{USCC_ALPHABET}]{{18}}$"
RESIDENT_SHAPE = "^[0-9]{17}[0-9X]$"


# --- the reference check of catalogue rules -------------------------------------------


def _column_rules(catalogue: Catalogue, source: str, schema: pl.Schema) -> list[pl.Expr]:
    """One expression per (column, rule): the rule's name where the row breaks it, else null."""
    exprs: list[pl.Expr] = []
    for name, col in catalogue.sources[source].columns.items():
        c = pl.col(name)
        text = schema[name] == pl.String
        present = c.is_not_null() & (c != "") if text else c.is_not_null()

        def rule(broken: pl.Expr, label: str, name: str = name) -> None:
            exprs.append(
                pl.when(broken.fill_null(False)).then(pl.lit(label)).alias(f"{name}/{label}")
            )

        if col.required:
            rule(~present, "missing_required")
        if col.type == "int" and text:  # a column the file holds as text
            number = c.cast(pl.Int64, strict=False)
            whole = c.str.contains(r"^[+-]?[0-9]+$")
            rule(present & number.is_null() & ~whole, "not_an_integer")
            rule(present & number.is_null() & whole, "integer_out_of_range")
            c = number
        if col.type == "bool" and text:
            rule(
                present & ~c.str.to_lowercase().is_in(["true", "false", "1", "0"]), "not_a_boolean"
            )
        if col.type == "date":
            parsed = c.str.to_date("%Y-%m-%d", strict=False)
            shaped = c.str.contains(r"^\d{4}-\d{2}-\d{2}$")
            rule(present & (parsed.is_null() | ~shaped), "unparseable_date")
        if col.type == "month":
            rule(present & ~c.str.contains(r"^\d{4}-(0[1-9]|1[0-2])$"), "unparseable_month")
        if col.min is not None:
            rule(c < col.min, "below_minimum")
        if col.max is not None:
            rule(c > col.max, "above_maximum")
        if (bound := col.money_bound) is not None:
            rule((c > bound) | (c < -bound), "money_out_of_range")
        if col.allowed is not None:
            rule(present & ~c.is_in(list(col.allowed)), "not_allowed_value")
        if col.pattern is not None:
            rule(present & ~c.str.contains(col.pattern), "pattern_mismatch")
        if col.check is not None:
            if col.check == "uscc":
                shaped, valid = c.str.contains(USCC_SHAPE), uscc_valid_expr(c)
            elif col.check == "resident_id":
                shaped, valid = c.str.contains(RESIDENT_SHAPE), resident_id_valid_expr(c)
            else:
                shaped = c.str.contains(USCC_SHAPE) | c.str.contains(RESIDENT_SHAPE)
                valid = uscc_valid_expr(c) | resident_id_valid_expr(c)
            rule(present & ~shaped, "malformed_identifier")
            rule(present & shaped & ~valid, "wrong_check_character")
        if col.in_list is not None:
            listed = catalogue.lists[col.in_list]
            rule(present & ~c.is_in(list(listed.values)), listed.rule)
        if col.not_before is not None:
            other = pl.col(col.not_before)
            if col.type == "month":
                c, other = c + "-01", other + "-01"
            day, other_day = c.str.to_date(strict=False), other.str.to_date(strict=False)
            rule(day < other_day, "date_out_of_order")
    return exprs


def rule_failures(
    catalogue: Catalogue, frames: dict[str, pl.DataFrame]
) -> dict[str, dict[int, list[str]]]:
    """Per source, the rows that break some catalogue rule and the rules they break.

    References are checked against the entity rows that pass (as ingest
    would accept them), so a spoiled entity row shows up in the rows naming it.
    """
    accepted: dict[str, pl.Series] = {}
    out: dict[str, dict[int, list[str]]] = {}
    for name in catalogue.ordered():
        source = catalogue.sources[name]
        exprs = _column_rules(catalogue, name, frames[name].schema)
        if source.key:
            dup = pl.struct(list(source.key)).is_duplicated()
            exprs.append(pl.when(dup).then(pl.lit("duplicate_key")).alias("key"))
        for col_name, col in source.columns.items():
            for ref in col.references:
                if ref.on_missing == "keep":
                    continue
                entity = catalogue.sources[ref.source].entity
                unknown = ~pl.col(col_name).is_in(accepted[ref.source].implode())
                exprs.append(
                    pl.when(unknown).then(pl.lit(f"unknown_{entity}")).alias(f"{col_name}/ref")
                )
        frame = frames[name].with_row_index("row")
        broken = frame.select("row", pl.concat_list(exprs).list.drop_nulls().alias("rules")).filter(
            pl.col("rules").list.len() > 0
        )
        out[name] = dict(zip(broken["row"].to_list(), broken["rules"].to_list(), strict=True))
        if source.entity is not None:
            good = frame.filter(~pl.col("row").is_in(list(out[name])))
            accepted[name] = good[source.entity_column]
    return out


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_source_catalogue()


def _read(out: Path, catalogue: Catalogue) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(out / f"{name}.parquet") for name in catalogue.sources}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("clean")
    manifest = generate(
        out, enterprises=ENTERPRISES, persons=PERSONS, seed=11, as_of=AS_OF, catalogue=catalogue
    )
    return {"out": out, "manifest": manifest, "frames": _read(out, catalogue)}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("dirty")
    manifest = generate(
        out, enterprises=ENTERPRISES, persons=PERSONS, seed=11, errors=0.01, catalogue=catalogue
    )
    return {"out": out, "manifest": manifest, "frames": _read(out, catalogue)}


def _age(frame: pl.DataFrame, on: dt.date = AS_OF) -> pl.Expr:
    born = pl.col("birth_on").str.to_date()
    today = on.year * 10_000 + on.month * 100 + on.day
    stamp = born.dt.year().cast(pl.Int32) * 10_000 + born.dt.month().cast(pl.Int32) * 100
    return (today - stamp - born.dt.day().cast(pl.Int32)) // 10_000


# --- files, determinism, manifest ------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path, catalogue: Catalogue) -> None:
    kwargs: dict[str, Any] = {
        "enterprises": 200,
        "persons": 2_000,
        "seed": 5,
        "errors": 0.01,
        "catalogue": catalogue,
    }
    first = generate(tmp_path / "a", **kwargs)
    second = generate(tmp_path / "b", **kwargs)
    assert first == second
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "manifest.json" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_another_seed_gives_other_data(tmp_path: Path, catalogue: Catalogue) -> None:
    generate(tmp_path / "a", enterprises=100, persons=1_000, seed=1, catalogue=catalogue)
    generate(tmp_path / "b", enterprises=100, persons=1_000, seed=2, catalogue=catalogue)
    a = pl.read_parquet(tmp_path / "a" / "persons.parquet")
    b = pl.read_parquet(tmp_path / "b" / "persons.parquet")
    assert not a.equals(b)


def test_one_file_per_source_and_a_manifest(clean: dict[str, Any], catalogue: Catalogue) -> None:
    out: Path = clean["out"]
    assert {p.name for p in out.iterdir()} == {
        *(f"{name}.parquet" for name in catalogue.sources),
        "manifest.json",
    }
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == clean["manifest"]
    assert manifest["generator"] == "disburse.synth"
    assert manifest["seed"] == 11
    assert manifest["as_of"] == "2026-01-01"
    assert manifest["window"] == {"first": "2024-01", "last": "2025-12"}
    assert manifest["injected"] == []
    assert manifest["rules"] == {}
    assert "seconds" not in manifest
    assert manifest["rows"] == {n: f.height for n, f in clean["frames"].items()}


@pytest.mark.parametrize("source", GENERATED_SOURCES)
def test_columns_and_types_follow_the_catalogue(
    clean: dict[str, Any], catalogue: Catalogue, source: str
) -> None:
    frame: pl.DataFrame = clean["frames"][source]
    columns = catalogue.sources[source].columns
    assert frame.columns == list(columns)
    for name, col in columns.items():
        dtype = frame.schema[name]
        if col.type == "int":
            assert dtype.is_integer(), name
        elif col.type == "bool":
            assert dtype == pl.Boolean, name
        else:  # string, and dates and months as text
            assert dtype == pl.String, name
    assert frame.height > 0


# --- validity --------------------------------------------------------------------------


def test_every_row_passes_every_rule(clean: dict[str, Any], catalogue: Catalogue) -> None:
    failures = rule_failures(catalogue, clean["frames"])
    assert {name: dict(list(rows.items())[:5]) for name, rows in failures.items() if rows} == {}


@pytest.mark.parametrize(
    ("source", "column"),
    [
        (source, column)
        for source in GENERATED_SOURCES
        for column, col in load_source_catalogue().sources[source].columns.items()
        if col.check is not None
    ],
)
def test_identifiers_validate(
    clean: dict[str, Any], catalogue: Catalogue, source: str, column: str
) -> None:
    frame: pl.DataFrame = clean["frames"][source]
    check = catalogue.sources[source].columns[column].check
    c = pl.col(column)
    valid = {
        "uscc": uscc_valid_expr(c),
        "resident_id": resident_id_valid_expr(c),
        "uscc_or_resident_id": uscc_valid_expr(c) | resident_id_valid_expr(c),
    }[str(check)]
    assert frame.select(valid.all()).item()
    # And the scalar checks agree on a sample.
    for code in frame[column].head(50).to_list():
        assert is_valid_uscc(code) or is_valid_resident_id(code)


@pytest.mark.parametrize("source", GENERATED_SOURCES)
def test_keys_are_unique(clean: dict[str, Any], catalogue: Catalogue, source: str) -> None:
    key = list(catalogue.sources[source].key)
    frame: pl.DataFrame = clean["frames"][source]
    assert frame.select(pl.struct(key).is_duplicated().any()).item() is False


def test_identity_numbers_carry_birth_date_sex_and_region(
    clean: dict[str, Any], catalogue: Catalogue
) -> None:
    """A number issued in the city carries one of its districts (where the person was born
    or first registered); one of a resident registered elsewhere, their home division."""
    persons: pl.DataFrame = clean["frames"]["persons"]
    regions = list(catalogue.lists["regions"].values)
    digits = pl.col("person_id")
    local = pl.col("region_code").is_in(regions)
    checks = persons.select(
        (digits.str.slice(6, 8) == pl.col("birth_on").str.replace_all("-", "")).all().alias("b"),
        ((digits.str.slice(16, 1).cast(pl.Int32) % 2 == 1) == (pl.col("sex") == "M"))
        .all()
        .alias("sex"),
        pl.when(local)
        .then(digits.str.slice(0, 6).is_in(regions))
        .otherwise(digits.str.slice(0, 6) == pl.col("region_code"))
        .all()
        .alias("region"),
    )
    assert checks.row(0) == (True, True, True)


def test_credit_codes_are_built_from_their_parts(clean: dict[str, Any]) -> None:
    firms: pl.DataFrame = clean["frames"]["enterprises"]
    assert firms.select(
        (pl.col("credit_code").str.slice(2, 6) == pl.col("region_code")).all()
    ).item()
    authority = dict(
        firms.select(pl.col("legal_form"), pl.col("credit_code").str.slice(0, 2)).unique().rows()
    )
    assert authority["company"] == "91"
    assert authority["individual_business"] == "92"
    for code in firms["credit_code"].head(200).to_list():  # GB 11714 organisation code
        assert org_code_check_char(code[8:16]) == code[16]


# --- realism ---------------------------------------------------------------------------


def test_enterprises_look_like_a_register(clean: dict[str, Any]) -> None:
    firms: pl.DataFrame = clean["frames"]["enterprises"]
    sizes = firms["size_class"].value_counts(sort=True)
    assert sizes["size_class"][0] == "micro"
    assert 0.7 < (firms["size_class"] == "micro").mean() < 0.8  # type: ignore[operator]
    assert 0.001 < firms["size_class"].null_count() / firms.height < 0.02
    forms = set(firms["legal_form"].unique())
    assert {"company", "individual_business"} <= forms
    assert (firms["status"] == "active").mean() > 0.8  # type: ignore[operator]
    assert {"revoked", "deregistered"} <= set(firms["status"].unique())
    assert 0.01 < firms["is_high_tech"].mean() < 0.06  # type: ignore[operator]
    years = firms["registered_on"].str.slice(0, 4).cast(pl.Int32)
    assert years.min() < 2000 < 2020 < years.max()  # type: ignore[operator]
    assert firms["industry_code"].drop_nulls().str.contains(r"^[A-T]\d{4}$").all()


def test_people_of_every_age(clean: dict[str, Any]) -> None:
    persons: pl.DataFrame = clean["frames"]["persons"].with_columns(
        age=_age(clean["frames"]["persons"])
    )
    alive = persons.filter(pl.col("status") == "alive")
    assert alive.filter(pl.col("age") >= 100).height >= 3
    assert alive.filter(pl.col("age") < 3).height > 0.01 * persons.height
    dead = persons.filter(pl.col("status") == "deceased")
    assert 0 < dead.height < 0.05 * persons.height
    assert dead["died_on"].null_count() == 0
    assert alive["died_on"].null_count() == alive.height
    assert 0.45 < (persons["sex"] == "M").mean() < 0.55  # type: ignore[operator]


def test_young_children_have_a_parent_or_guardian(clean: dict[str, Any]) -> None:
    persons: pl.DataFrame = clean["frames"]["persons"]
    relations: pl.DataFrame = clean["frames"]["relations"]
    babies = persons.with_columns(age=_age(persons)).filter(
        (pl.col("age") < 3) & (pl.col("status") == "alive")
    )
    carers = relations.filter(pl.col("relation").is_in(["parent", "guardian"]))
    cared = babies.join(carers, on="person_id", how="semi")
    assert cared.height > 0.9 * babies.height
    assert {"parent", "guardian", "spouse"} == set(relations["relation"].unique())
    # A child has at most two parents, and parents are 18 to 55 years older.
    parents = relations.filter(pl.col("relation") == "parent")
    assert parents.group_by("person_id").len()["len"].max() == 2
    born = persons.select("person_id", pl.col("birth_on").str.to_date().alias("born"))
    gap = parents.join(born, on="person_id").join(
        born.rename({"person_id": "related_person_id", "born": "parent_born"}),
        on="related_person_id",
    )
    years = (gap["born"] - gap["parent_born"]).dt.total_days() / 365.25
    assert years.min() >= 18  # type: ignore[operator]
    assert years.max() <= 55  # type: ignore[operator]


def test_a_third_of_working_age_residents_are_registered_elsewhere(
    clean: dict[str, Any], catalogue: Catalogue
) -> None:
    """Residents registered outside the city (migrants, 外来人口): about a third of those of
    working age and a few of the old, from other cities of the province as well as from
    other provinces (so that a policy's city and provincial readings differ); a child
    shares the registration of the parents or guardian."""
    frames = clean["frames"]
    persons = frames["persons"].with_columns(age=_age(frames["persons"]))
    regions = list(catalogue.lists["regions"].values)
    elsewhere = ~pl.col("region_code").is_in(regions)
    working = persons.filter((pl.col("age") >= 18) & (pl.col("age") < 60))
    assert 0.25 < working.select(elsewhere.mean()).item() < 0.35
    old = persons.filter(pl.col("age") >= 80).select(elsewhere.sum(), pl.len()).row(0)
    assert 0 < old[0] < 0.1 * old[1]
    outside = persons.filter(elsewhere)["region_code"]
    assert not outside.str.starts_with("3301").any()
    in_province = outside.str.starts_with("33").mean()
    assert 0.2 < in_province < 0.4  # type: ignore[operator]
    assert outside.str.slice(0, 2).n_unique() >= 10
    carers = frames["relations"].filter(pl.col("relation").is_in(["parent", "guardian"]))
    region = persons.select("person_id", "region_code")
    pairs = carers.join(region, on="person_id").join(
        region.rename({"person_id": "related_person_id", "region_code": "carer_region"}),
        on="related_person_id",
    )
    assert pairs.height > 0
    assert (pairs["region_code"] == pairs["carer_region"]).all()
    assert pairs.filter(~pl.col("region_code").is_in(regions)).height > 0
    # The city's household registers hold only those registered here.
    members = frames["household_members"]["person_id"].implode()
    assert persons.filter(pl.col("person_id").is_in(members)).select(~elsewhere.any()).item()


def test_the_same_seed_registers_the_same_people_elsewhere(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    def registrations(seed: int, folder: str) -> pl.DataFrame:
        generate(tmp_path / folder, enterprises=50, persons=3_000, seed=seed, catalogue=catalogue)
        persons = pl.read_parquet(tmp_path / folder / "persons.parquet")
        return persons.select("person_id", "region_code")

    first, again, other = registrations(3, "a"), registrations(3, "b"), registrations(4, "c")
    assert first.equals(again)
    assert not first.equals(other)
    assert first.filter(~pl.col("region_code").str.starts_with("3301")).height > 0


def test_the_generator_fingerprint_follows_its_catalogue(catalogue: Catalogue) -> None:
    """Cached cities (disburse bench, the benchmarks) key on it: another catalogue or
    another generator is another city."""
    data = catalogue.model_dump(by_alias=True, exclude_none=True)
    data["sources"]["persons"]["columns"]["region_code"]["in_list"] = "regions"
    other = Catalogue.model_validate(data)
    assert generator_fingerprint(catalogue) == generator_fingerprint(load_source_catalogue())
    assert generator_fingerprint(catalogue) != generator_fingerprint(other)


def test_persons_held_to_the_city_list_are_all_registered_here(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    """A catalogue whose persons.region_code must be one of the city's divisions gets no
    one registered elsewhere: the generator draws only codes the column accepts."""
    data = catalogue.model_dump(by_alias=True, exclude_none=True)
    column = data["sources"]["persons"]["columns"]["region_code"]
    del column["pattern"]
    column["in_list"] = "regions"
    local = Catalogue.model_validate(data)
    generate(tmp_path, enterprises=50, persons=3_000, seed=1, catalogue=local)
    persons = pl.read_parquet(tmp_path / "persons.parquet")
    assert persons["region_code"].is_in(list(catalogue.lists["regions"].values)).all()


def test_the_city_s_divisions_are_required(tmp_path: Path, catalogue: Catalogue) -> None:
    data = catalogue.model_dump(by_alias=True, exclude_none=True)
    del data["sources"]["enterprises"]["columns"]["region_code"]["in_list"]
    data["sources"]["households"]["columns"]["region_code"]["in_list"] = "districts"
    data["lists"] = {"districts": data["lists"]["regions"]}
    with pytest.raises(SynthError, match=r"needs the city's divisions.*in_list: regions"):
        generate(
            tmp_path, enterprises=10, persons=10, seed=1, catalogue=Catalogue.model_validate(data)
        )


def test_new_graduates_are_hired_and_insured(clean: dict[str, Any]) -> None:
    frames = clean["frames"]
    graduates: pl.DataFrame = frames["graduates"]
    assert set(graduates["level"].unique()) == {
        "vocational", "associate", "bachelor", "master", "doctor"
    }  # fmt: skip
    recent = graduates.filter(pl.col("graduated_on") >= "2024-01-01")
    assert recent.height > 0
    local = frames["enterprises"]["credit_code"].implode()
    hired = recent.join(
        frames["employment"].filter(
            (pl.col("from_month") >= "2024-01") & pl.col("credit_code").is_in(local)
        ),
        on="person_id",
    )
    assert hired.height > 0.5 * recent["person_id"].n_unique()


def test_employment_spells(clean: dict[str, Any]) -> None:
    frames = clean["frames"]
    employment: pl.DataFrame = frames["employment"]
    local = employment["credit_code"].is_in(frames["enterprises"]["credit_code"].implode())
    assert 0.02 < (~local).mean() < 0.3  # type: ignore[operator]
    ended = employment["to_month"].is_not_null().mean()
    assert 0.05 < ended < 0.5  # type: ignore[operator]
    assert employment["to_month"].drop_nulls().max() <= "2025-12"  # type: ignore[operator]


def test_about_one_percent_credit_listed(clean: dict[str, Any]) -> None:
    frames = clean["frames"]
    listed: pl.DataFrame = frames["credit_lists"]
    firms = listed["subject_id"].is_in(frames["enterprises"]["credit_code"].implode())
    people = listed["subject_id"].is_in(frames["persons"]["person_id"].implode())
    firm_share = listed.filter(firms)["subject_id"].n_unique() / frames["enterprises"].height
    person_share = listed.filter(people)["subject_id"].n_unique() / frames["persons"].height
    assert 0.005 < firm_share < 0.02
    assert 0.005 < person_share < 0.02
    assert (~(firms | people)).sum() > 0  # subjects from outside the city
    assert "serious_dishonesty" in set(listed["list"].unique())
    assert listed["removed_on"].null_count() < listed.height


def test_monthly_data_tell_layoffs_and_arrears(clean: dict[str, Any]) -> None:
    frames = clean["frames"]
    social: pl.DataFrame = frames["social_security_monthly"]
    assert social["month"].n_unique() == 24
    per_firm = social.group_by("credit_code", maintain_order=True).agg(
        pl.col("insured_headcount").first().alias("start"),
        pl.col("insured_headcount").last().alias("end"),
        pl.len(),
    )
    staffed = per_firm.filter((pl.col("len") == 24) & (pl.col("start") > 0))
    layoff = (staffed["start"] - staffed["end"]) / staffed["start"]
    assert 0.02 < (layoff > 0.055).mean() < 0.3  # type: ignore[operator]
    assert (layoff < 0).mean() > 0.05  # type: ignore[operator]
    short = social.filter(pl.col("ui_premium_paid_fen") < pl.col("ui_premium_due_fen"))
    assert 0 < short.height < 0.05 * social.height
    assert social.filter(pl.col("insured_headcount") == 0)["ui_premium_due_fen"].max() == 0
    assert social["ui_new_claimants"].sum() > 0
    # Claimants come from falling headcount (or the turnover of 30 staff or more).
    drops = social.with_columns(
        fell=pl.col("insured_headcount").diff().over("credit_code").fill_null(0) < 0
    )
    assert drops.filter(
        (pl.col("ui_new_claimants") > 0) & ~pl.col("fell") & (pl.col("insured_headcount") < 30)
    ).is_empty()
    ratings: pl.DataFrame = frames["tax_ratings"]
    assert set(ratings["year"].unique()) == {2024, 2025}
    shares = ratings["rating"].value_counts(normalize=True)
    ab = shares.filter(pl.col("rating").is_in(["A", "B"]))["proportion"].sum()
    assert ab > 0.7


def test_dates_and_window_follow_as_of(tmp_path: Path, catalogue: Catalogue) -> None:
    as_of = dt.date(2026, 3, 15)
    manifest = generate(
        tmp_path,
        enterprises=200,
        persons=1_000,
        seed=3,
        as_of=as_of,
        months=30,
        catalogue=catalogue,
    )
    assert manifest["window"] == {"first": "2023-09", "last": "2026-02"}
    months = pl.read_parquet(tmp_path / "tax_monthly.parquet")["month"]
    assert months.min() == "2023-09"
    assert months.max() == "2026-02"
    assert pl.read_parquet(tmp_path / "persons.parquet")["birth_on"].max() <= "2026-03-14"  # type: ignore[operator]


# --- bad rows ----------------------------------------------------------------------------


def test_every_quarantine_rule_can_be_injected(catalogue: Catalogue) -> None:
    """A rule added to the validator without an injection here fails this test."""
    assert injectable(catalogue) == set(quarantine_rules(catalogue))


def test_every_quarantine_rule_is_injected(dirty: dict[str, Any], catalogue: Catalogue) -> None:
    injected = dirty["manifest"]["injected"]
    rules = set(quarantine_rules(catalogue))
    assert len(rules) == 19
    assert {i["rule"] for i in injected} == rules
    assert dirty["manifest"]["rules"] == dict(sorted(Counter(i["rule"] for i in injected).items()))
    assert set(dirty["manifest"]["rules"]) == rules
    assert len({i["source"] for i in injected}) >= 6
    # A person's household may be registered anywhere: a bad code breaks the pattern of a
    # division; an enterprise's must be one of the city's.
    by_column = {(i["source"], i["column"]) for i in injected}
    assert ("persons", "region_code") in {
        (i["source"], i["column"]) for i in injected if i["rule"] == "pattern_mismatch"
    }
    assert ("enterprises", "region_code") in by_column
    assert {i["source"] for i in injected if i["rule"] == "unknown_region"} == {"enterprises"}
    for entry in injected:
        assert set(entry) == {"source", "row", "rule", "column"} | (
            {"duplicate_of"} if entry["rule"] == "duplicate_key" else set()
        )


def test_injected_rows_break_exactly_their_rule(
    dirty: dict[str, Any], catalogue: Catalogue
) -> None:
    expected: dict[str, dict[int, list[str]]] = {name: {} for name in catalogue.sources}
    for entry in dirty["manifest"]["injected"]:
        expected[entry["source"]][entry["row"]] = [entry["rule"]]
        if "duplicate_of" in entry:  # the catalogue quarantines every copy of a repeated key
            expected[entry["source"]][entry["duplicate_of"]] = ["duplicate_key"]
    assert rule_failures(catalogue, dirty["frames"]) == expected


def test_injected_values_look_as_described(dirty: dict[str, Any], catalogue: Catalogue) -> None:
    frames = dirty["frames"]
    for entry in dirty["manifest"]["injected"]:
        frame: pl.DataFrame = frames[entry["source"]]
        rule, row = entry["rule"], entry["row"]
        if rule == "duplicate_key":
            key = list(catalogue.sources[entry["source"]].key)
            assert entry["column"] == ",".join(key)
            assert frame[row].select(key).row(0) == frame[entry["duplicate_of"]].select(key).row(0)
            continue
        value = frame[entry["column"]][row]
        if rule == "wrong_check_character":
            assert len(value) == 18
            assert not is_valid_uscc(value)
            assert not is_valid_resident_id(value)
        elif rule == "below_minimum":
            assert int(value) < 0  # an int, or text in a column the file holds as text
        elif rule == "unknown_region":
            assert len(value) == 6
            assert value.isdigit()
            assert value not in catalogue.lists["regions"].values
        elif rule == "missing_required":
            assert value is None
        elif rule == "unparseable_date":
            assert value.endswith("-02-30") or value.count("/") == 2
        elif rule == "unparseable_month":
            assert value.count("/") == 1
        elif rule == "malformed_identifier":
            assert len(value) == 17
        elif rule == "unknown_household":
            assert value.startswith("H99")
            assert len(value) == 13
        elif rule in ("unknown_enterprise", "unknown_person"):
            valid = is_valid_uscc if rule == "unknown_enterprise" else is_valid_resident_id
            assert valid(value)
        elif rule == "not_an_integer":
            assert value.endswith(",5")
        elif rule == "integer_out_of_range":
            assert int(value) > 2**63
        elif rule == "money_out_of_range":
            assert int(value) >= 2**62
        elif rule == "above_maximum":
            assert int(value) > 2100
        elif rule == "not_a_boolean":
            assert value == "是"
        elif rule == "not_allowed_value":
            assert value == "unknown" or value.isupper()
        elif rule == "pattern_mismatch":
            assert "-" in value or value == "#"
        elif rule == "date_out_of_order":
            before = catalogue.sources[entry["source"]].columns[entry["column"]].not_before
            assert value < frame[before][row]
        else:
            raise AssertionError(f"no description of {rule}")


def test_no_errors_means_none_injected(clean: dict[str, Any]) -> None:
    assert clean["manifest"]["errors"] == 0.0
    assert clean["manifest"]["injected"] == []


# --- arguments and catalogue -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"months": 11}, "months must be at least 12", id="short-window"),
        pytest.param({"seed": -1}, "seed", id="negative-seed"),
        pytest.param({"errors": 0.9}, "errors", id="too-many-errors"),
        pytest.param({"persons": 0}, "at least 1", id="nobody"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, catalogue: Catalogue, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {
        "enterprises": 10,
        "persons": 10,
        "seed": 1,
        "catalogue": catalogue,
    } | kwargs
    with pytest.raises(SynthError, match=message):
        generate(tmp_path, **arguments)


def test_a_column_the_generator_cannot_make_is_named(tmp_path: Path, catalogue: Catalogue) -> None:
    data = catalogue.model_dump(by_alias=True, exclude_none=True)
    data["sources"]["persons"]["columns"]["shoe_size"] = {"type": "int", "description": "x"}
    extended = Catalogue.model_validate(data)
    with pytest.raises(SynthError, match=r"persons: the generator makes no column shoe_size"):
        generate(tmp_path, enterprises=10, persons=10, seed=1, catalogue=extended)


def test_the_months_streamed_block_by_block_are_the_months_held_whole(
    tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without errors to inject, the monthly sources are written block by block (never all
    in memory); with them, concatenated and spoiled whole.  The rows are the same: in
    blocks of 1,000 firms, the blocks' frames concatenate to the whole, the per-firm facts
    agree, and the file `generate` streams holds the whole's rows."""
    import disburse.synth as synth
    from disburse.synth import monthly
    from disburse.synth.enterprises import build_enterprises

    monkeypatch.setattr(monthly, "BLOCK", 1_000)
    ctx = synth._context(catalogue, 7, AS_OF, synth.DEFAULT_MONTHS)
    ent = build_enterprises(ctx, 3_500)
    whole = monthly.build_monthly(ctx, ent)
    blocks: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    ctx = synth._context(catalogue, 7, AS_OF, synth.DEFAULT_MONTHS)
    streamed = monthly.build_monthly(
        ctx, build_enterprises(ctx, 3_500), lambda t, s: blocks.append((t, s))
    )
    assert len(blocks) == 4
    assert pl.concat([t for t, _ in blocks]).equals(whole.tax)
    assert pl.concat([s for _, s in blocks]).equals(whole.social_security)
    assert streamed.tax.height == streamed.social_security.height == 0
    assert streamed.row_enterprise.shape[0] == 0  # only spoiling rows needs it
    codes = ent.code.gather(pl.Series(whole.row_enterprise, dtype=pl.UInt32))
    assert codes.equals(whole.tax["credit_code"], check_names=False)
    assert (streamed.headcount_end == whole.headcount_end).all()
    assert (streamed.arrears == whole.arrears).all()
    out = tmp_path / "city"
    generate(out, enterprises=3_500, persons=5_000, seed=7, as_of=AS_OF, catalogue=catalogue)
    written = pl.read_parquet(out / "tax_monthly.parquet")
    assert written.equals(whole.tax.select(written.columns))


def test_person_sources_written_in_blocks_hold_the_rows_made_whole(
    catalogue: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The register, relations and employment are written a block of rows at a time; in
    blocks of 1,000 rows the files hold the same rows as in one block, and every
    person account holder is still there once."""
    import importlib

    # disburse.synth._context is shadowed there by a function of the same name.
    context_module = importlib.import_module("disburse.synth._context")
    whole = tmp_path / "whole"
    generate(whole, enterprises=800, persons=6_000, seed=3, as_of=AS_OF, catalogue=catalogue)
    monkeypatch.setattr(context_module, "ROWS_PER_BLOCK", 1_000)
    split = tmp_path / "split"
    generate(split, enterprises=800, persons=6_000, seed=3, as_of=AS_OF, catalogue=catalogue)
    for name in ("persons", "relations", "employment"):
        a = pl.read_parquet(whole / f"{name}.parquet")
        b = pl.read_parquet(split / f"{name}.parquet")
        assert a.height > 2_000, name  # several blocks
        assert a.equals(b), name
    a = pl.read_parquet(whole / "person_accounts.parquet")
    b = pl.read_parquet(split / "person_accounts.parquet")
    assert a["person_id"].equals(b["person_id"])
    assert b["account_no"].str.len_chars().is_between(16, 19).all()
