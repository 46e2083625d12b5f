"""The public notice of new entitlements: golden CSV and HTML for a small fixed list,
personal data masked, the same bytes for the same input, and input refused in words."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import io
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from common.errors import DisburseError
from common.holidays import load_work_calendar
from common.identifiers import is_valid_resident_id, is_valid_uscc
from common.money import format_yuan
from common.workdays import objection_deadline
from jobs.notice import (
    CSV_HEADER,
    NoticeHeader,
    escape_expr,
    notice_csv,
    notice_html,
    public_list,
    write_notice_csv,
    write_notice_html,
    yuan_expr,
)
from ledgers.masking import mask_id, mask_id_expr, mask_name, mask_name_expr

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CAL = load_work_calendar(ROOT / "policies" / "holidays.yaml")

CREDIT_CODE = "91330106MA2B3C4D5D"
ZHANG = "33010619850317005X"  # check character X
OUYANG = "330102199207040049"
ENTERPRISE = '杭州"云栖"&<西湖>数字科技有限公司'  # quotes, ampersand, angle brackets


def entitlements() -> pl.DataFrame:
    """An enterprise and two persons, as a run hands them over, with a column the notice
    must never show (an account number)."""
    return pl.DataFrame(
        {
            "policy_id": ["job-stabilisation-refund", "childcare-subsidy", "childcare-subsidy"],
            "policy_title": ["失业保险稳岗返还", "育儿补贴", "育儿补贴"],
            "benefit_period": ["2026", "2026", "2026"],
            "target": ["enterprise", "person", "person"],
            "name": [ENTERPRISE, "张三丰", "欧阳娜娜"],
            "identifier": [CREDIT_CODE, ZHANG, OUYANG],
            "amount_fen": [123_456_789, 360_000, 180_050],
            "account_no": ["6222021202049871361", "6217001540026650273", "6228480402564890018"],
        }
    )


def header() -> NoticeHeader:
    deadline = objection_deadline(dt.date(2026, 3, 6), 5, CAL)  # a Friday: to the next
    return NoticeHeader.of(
        deadline,
        title="关于2026年第一批惠企利民政策直达资金拟发放名单的公示",
        issuer="杭州市西湖区人力资源和社会保障局",
        contact="电话 0571-8888 8888（工作日 9:00-17:00）\n"
        "邮件 <objection@example.gov.cn>，请写明政策、序号与异议理由",
    )


def test_the_fixture_is_real_identifiers() -> None:
    assert is_valid_uscc(CREDIT_CODE)
    assert is_valid_resident_id(ZHANG)
    assert is_valid_resident_id(OUYANG)
    assert header().objection_deadline == dt.date(2026, 3, 13)


# --- golden files -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "html"])
def test_the_notice_is_its_golden_file(kind: str, update_golden: bool) -> None:
    data = (
        notice_csv(entitlements())
        if kind == "csv"
        else notice_html(entitlements(), header()).encode("utf-8")
    )
    golden = GOLDEN / f"notice.{kind}"
    if update_golden:
        golden.write_bytes(data)
    assert golden.is_file(), f"{golden} is missing: run pytest --update-golden"
    assert data == golden.read_bytes(), (
        f"the notice differs from {golden}; if the change is intended, refresh with "
        "pytest --update-golden and review the diff"
    )


def test_the_same_input_in_another_order_gives_the_same_bytes(tmp_path: Path) -> None:
    shuffled = entitlements().reverse()
    assert shuffled["identifier"].to_list() != entitlements()["identifier"].to_list()
    assert notice_csv(shuffled) == notice_csv(entitlements())
    assert notice_html(shuffled, header()) == notice_html(entitlements(), header())


# --- what is shown, and what never is -----------------------------------------------------------


def _outputs() -> dict[str, str]:
    return {
        "csv": notice_csv(entitlements()).decode("utf-8"),
        "html": notice_html(entitlements(), header()),
    }


@pytest.mark.parametrize("kind", ["csv", "html"])
def test_no_identity_number_or_account_is_written_whole(kind: str) -> None:
    text = _outputs()[kind]
    frame = entitlements()
    persons = frame.filter(pl.col("target") == "person")
    for number in persons["identifier"]:
        assert number not in text
        assert number[6:14] not in text  # the birth date
        assert mask_id(number) in text
    for account in frame["account_no"]:
        assert account not in text
        assert account[-10:] not in text
    for name in persons["name"]:
        assert name not in text
        assert name[1:] not in text
        assert mask_name(name) in text


@pytest.mark.parametrize("kind", ["csv", "html"])
def test_an_enterprise_is_shown_whole(kind: str) -> None:
    text = _outputs()[kind]
    assert CREDIT_CODE in text
    shown = ENTERPRISE if kind == "csv" else html.escape(ENTERPRISE)
    assert shown in text or shown.replace('"', '""') in text  # CSV doubles quotes


def test_an_enterprise_numbered_like_a_person_is_masked() -> None:
    frame = entitlements().with_columns(
        identifier=pl.when(pl.col("target") == "enterprise")
        .then(pl.lit("330106197011080010"))
        .otherwise(pl.col("identifier"))
    )
    assert is_valid_resident_id("330106197011080010")
    for text in (notice_csv(frame).decode("utf-8"), notice_html(frame, header())):
        assert "330106197011080010" not in text
        assert "330106**********10" in text


def test_the_page_escapes_every_text_and_loads_nothing() -> None:
    page = _outputs()["html"]
    assert "杭州&quot;云栖&quot;&amp;&lt;西湖&gt;数字科技有限公司" in page
    assert "<西湖>" not in page
    assert "&lt;objection@example.gov.cn&gt;" in page
    assert "请写明政策、序号与异议理由" in page
    for loads in ("<script", "src=", "href=", "<link", "url(", "@import", "<iframe", "<img"):
        assert loads not in page.lower()


def test_the_page_says_the_period_and_a_total_per_policy() -> None:
    page = _outputs()["html"]
    assert '<time datetime="2026-03-06">2026年3月6日（星期五）</time>' in page
    assert '<time datetime="2026-03-13">2026年3月13日（星期五）</time>' in page
    assert "5 个工作日" in page
    assert page.count("<table>") == 2
    assert page.index("育儿补贴") < page.index("失业保险稳岗返还")  # by policy id
    assert '<th class="n" data-fen="540050">5,400.50</th>' in page
    assert '<th class="n" data-fen="123456789">1,234,567.89</th>' in page
    assert 'data-fen="123996839">1,239,968.39</span>' in page


def test_the_csv_opens_in_excel_and_reads_back_to_the_fen() -> None:
    data = notice_csv(entitlements())
    assert data.startswith(b"\xef\xbb\xbf")
    first = data[3:].split(b"\r\n", 1)[0].decode("utf-8")
    assert first == ",".join(CSV_HEADER.values())
    back = pl.read_csv(io.BytesIO(data), infer_schema=False)
    amount = CSV_HEADER["amount"]
    fen = [int(Decimal(a) * 100) for a in back[amount]]
    assert fen == [180_050, 360_000, 123_456_789]  # childcare first; then by identifier
    assert back[amount].to_list() == ["1800.50", "3600.00", "1234567.89"]
    assert back[CSV_HEADER["no"]].to_list() == ["1", "2", "1"]
    assert back[CSV_HEADER["target"]].to_list() == ["个人", "个人", "企业"]


def test_a_cell_a_spreadsheet_would_run_is_written_as_text() -> None:
    frame = entitlements().with_columns(
        name=pl.when(pl.col("target") == "enterprise")
        .then(pl.lit('=HYPERLINK("http://x","y")'))
        .otherwise(pl.col("name"))
    )
    back = pl.read_csv(io.BytesIO(notice_csv(frame)), infer_schema=False)
    assert """'=HYPERLINK("http://x","y")""" in back[CSV_HEADER["name"]].to_list()


def test_an_empty_list_is_a_notice_of_nothing() -> None:
    empty = entitlements().clear()
    page = notice_html(empty, header())
    assert "No new entitlements" in page
    assert "<table>" not in page
    assert notice_csv(empty).count(b"\r\n") == 1


# --- files -----------------------------------------------------------------------------------


def test_the_writers_return_the_files_hash_count_and_total(tmp_path: Path) -> None:
    csv = write_notice_csv(entitlements(), tmp_path / "out" / "notice.csv")
    page = write_notice_html(entitlements(), header(), tmp_path / "out" / "notice.html")
    for written in (csv, page):
        assert written.sha256 == hashlib.sha256(written.path.read_bytes()).hexdigest()
        assert (written.count, written.amount_fen) == (3, 123_996_839)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notice.csv", "notice.html"]
    again = write_notice_csv(entitlements(), tmp_path / "out" / "notice.csv")
    assert again.sha256 == csv.sha256


# --- the expressions agree with the functions they stand for ------------------------------------


def test_masking_expressions_agree_with_the_masking_functions() -> None:
    values = [ZHANG, OUYANG, "1234", "12345678", "123456789", "", None, "张三", "欧阳娜娜", "李"]
    values += ["𠮷野家", "330106850317001"]  # a character outside the BMP; an old 15-digit number
    got = pl.DataFrame({"v": values}, schema={"v": pl.String}).select(
        i=mask_id_expr(pl.col("v")), n=mask_name_expr(pl.col("v"))
    )
    assert got["i"].to_list() == [mask_id(v) for v in values]
    assert got["n"].to_list() == [mask_name(v) for v in values]


def test_amounts_are_format_yuan_exactly() -> None:
    fen = [0, 1, 9, 10, 99, 100, 101, 99_999, 100_000, 123_456_789, 10**15, 2**63 - 1]
    got = pl.DataFrame({"f": fen}).select(
        g=yuan_expr(pl.col("f"), grouped=True), p=yuan_expr(pl.col("f"), grouped=False)
    )
    assert got["g"].to_list() == [format_yuan(f) for f in fen]
    assert got["p"].to_list() == [format_yuan(f).replace(",", "") for f in fen]


def test_escaping_is_html_escape() -> None:
    texts = ["a&b", "<b>", "\"q\" 'a'", "&amp;", "张三", ""]
    got = pl.DataFrame({"t": texts}).select(escape_expr(pl.col("t")))["t"].to_list()
    assert got == [html.escape(t, quote=True) for t in texts]


# --- input refused in words ---------------------------------------------------------------------


def _with(**changes: pl.Expr) -> pl.DataFrame:
    return entitlements().with_columns(**changes)


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (entitlements().drop("identifier"), "lack the column(s) identifier"),
        (_with(amount_fen=pl.col("amount_fen") / 100), "amount_fen is Float64, not whole fen"),
        (_with(benefit_period=pl.lit(2026)), "not text: benefit_period (Int32)"),
        (_with(name=pl.lit(None, pl.String)), "empty values: name in 3 row(s)"),
        (_with(name=pl.lit("  ")), "empty values: name in 3 row(s)"),
        (_with(target=pl.lit("household")), "unknown target(s) 'household'"),
        (_with(amount_fen=-pl.col("amount_fen")), "3 entitlement(s) to publish have a negative"),
        (
            pl.concat([entitlements(), entitlements().tail(1)]),
            "2 rows are the same entitlement: childcare-subsidy 2026 for 330102**********49",
        ),
        (_with(policy_title=pl.lit("育儿补贴") + pl.col("name")), "has more than one title"),
    ],
    ids=[
        "missing-column",
        "float-amount",
        "number-period",
        "null-name",
        "blank-name",
        "unknown-target",
        "negative",
        "twice",
        "two-titles",
    ],
)
def test_input_that_cannot_be_listed_is_refused_in_words(frame: pl.DataFrame, says: str) -> None:
    with pytest.raises(DisburseError) as err:
        public_list(frame)
    text = err.value.render()
    assert says in text
    assert "\n  fix: " in text
    for number in (ZHANG, OUYANG):
        assert number not in text


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"objection_deadline": dt.date(2026, 3, 5)}, "is before the day of publication"),
        ({"contact": " "}, "the notice has no contact"),
        ({"working_days": 0}, "objection period is 0 working days"),
    ],
)
def test_a_header_that_cannot_be_is_refused(change: dict[str, object], says: str) -> None:
    fields = {**{f: getattr(header(), f) for f in NoticeHeader.__slots__}, **change}
    with pytest.raises(DisburseError, match=says):
        notice_html(entitlements(), NoticeHeader(**fields))  # type: ignore[arg-type]
