"""The public notice (公示) of a run's new entitlements: a CSV file and one HTML page.

Before money is due, who is to be paid what is published for a number of working
days, during which anyone may object (docs/policies.md, "Working days"; the
deadline is `common.workdays.objection_deadline`).  This module renders the list;
publishing it, recording it in the ledger and taking objections are the caller's.

The list shows what the public lists of such notices show:

* an enterprise: its name and unified social credit code, whole (both printed on its
  business licence and public in the enterprise credit register); an identifier that
  is a resident identity number all the same is masked (`mask_entity`: the safe side);
* a person: the name masked but the family name (`mask_name`: 张**) and the identity
  number masked but its first 6 and last 2 characters (`mask_id`: 330106**********1X).

No other column of the input is written, so no account number is.  Rows are in a
fixed order (policy, then identifier, then benefit period), amounts are yuan with
two decimals computed from integer fen, nothing reads the clock: the same input
gives the same bytes, and each writer returns the file's sha256, the number of
entitlements listed and their total.  Rows are rendered as Polars expressions,
never one by one in Python.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from common.money import FEN_PER_YUAN, format_yuan
from common.workdays import Deadline
from jobs.errors import JobError
from ledgers.masking import (
    is_resident_id_expr,
    mask_entity,
    mask_id,
    mask_id_expr,
    mask_name_expr,
)

# The input: one row per new entitlement.
COLUMNS: Final = (
    "policy_id",
    "policy_title",
    "benefit_period",
    "target",
    "name",
    "identifier",
    "amount_fen",
)
TARGETS: Final = {"enterprise": "企业", "person": "个人"}
# The CSV's header: Chinese for the public, English for everyone else, in one row so
# that Excel's filters and any CSV reader take it as the header.
CSV_HEADER: Final = {
    "no": "序号 No.",
    "policy_id": "政策编号 Policy ID",
    "policy_title": "政策名称 Policy",
    "benefit_period": "享受期 Benefit period",
    "target": "对象 Target",
    "name": "名称/姓名 Name",
    "identifier": "统一社会信用代码/身份证号码 Identifier",
    "amount": "金额（元） Amount (yuan)",
}
# A cell a spreadsheet would run as a formula starts with one of these (OWASP, "CSV
# injection"); such a name or title is written with a leading apostrophe.
FORMULA_START: Final = r"^[=+\-@\t\r]"
WEEKDAYS_ZH: Final = ("一", "二", "三", "四", "五", "六", "日")


@dataclass(frozen=True, slots=True)
class NoticeHeader:
    """What the page says above the lists: the caller's words, and the two dates."""

    title: str  # 关于……拟发放名单的公示
    issuer: str  # the issuing body, as it signs
    published_on: dt.date
    objection_deadline: dt.date  # the last day an objection is received (inclusive)
    contact: str  # how to object: where, to whom, by which means; line breaks kept
    working_days: int | None = None  # the objection period, said on the page when given

    @classmethod
    def of(cls, deadline: Deadline, *, title: str, issuer: str, contact: str) -> NoticeHeader:
        """The header of a notice whose deadline `objection_deadline` counted (its
        warnings are the caller's to show)."""
        return cls(
            title, issuer, deadline.published_on, deadline.on, contact, deadline.working_days
        )


@dataclass(frozen=True, slots=True)
class NoticeFile:
    """A notice file written: where, its sha256, how many entitlements it lists and their
    total in fen."""

    path: Path
    sha256: str
    count: int
    amount_fen: int


def public_list(frame: pl.DataFrame) -> pl.DataFrame:
    """The entitlements as the public sees them, checked, masked and in the notice's order:
    policy_id, policy_title, benefit_period, target, no (per policy, from 1), name and
    identifier (masked as the module says), amount_fen.  JobError for input that cannot
    be listed (a column missing, of the wrong type, empty, an unknown target, a negative
    amount, an entitlement twice, a policy with two titles)."""
    checked = _checked(frame)
    person = pl.col("target") == "person"
    ident = pl.col("identifier")
    return (
        checked.sort(["policy_id", "identifier", "benefit_period"], maintain_order=True)
        .with_columns(
            no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("policy_id"),
            name=pl.when(person).then(mask_name_expr(pl.col("name"))).otherwise(pl.col("name")),
            identifier=pl.when(person | is_resident_id_expr(ident))
            .then(mask_id_expr(ident))
            .otherwise(ident),
        )
        .select(
            "policy_id",
            "policy_title",
            "benefit_period",
            "target",
            "no",
            "name",
            "identifier",
            "amount_fen",
        )
    )


def notice_csv(frame: pl.DataFrame) -> bytes:
    """The notice as CSV: UTF-8 with a byte-order mark (Excel reads it as UTF-8), one
    header row in Chinese and English, amounts in yuan with two decimals, lines ended
    by CRLF (RFC 4180)."""
    return _csv(public_list(frame))


def _csv(listed: pl.DataFrame) -> bytes:
    rows = listed.select(
        pl.col("no").cast(pl.String).alias(CSV_HEADER["no"]),
        pl.col("policy_id").alias(CSV_HEADER["policy_id"]),
        _no_formula(pl.col("policy_title")).alias(CSV_HEADER["policy_title"]),
        pl.col("benefit_period").alias(CSV_HEADER["benefit_period"]),
        pl.col("target").replace_strict(TARGETS).alias(CSV_HEADER["target"]),
        _no_formula(pl.col("name")).alias(CSV_HEADER["name"]),
        pl.col("identifier").alias(CSV_HEADER["identifier"]),
        yuan_expr(pl.col("amount_fen"), grouped=False).alias(CSV_HEADER["amount"]),
    )
    text = rows.write_csv(line_terminator="\r\n", quote_style="necessary")
    return b"\xef\xbb\xbf" + text.encode("utf-8")


def notice_html(frame: pl.DataFrame, header: NoticeHeader) -> str:
    """The notice as one HTML page: no script, no external resource (the style is inline);
    the title, the issuer, the dates, how to object, then one table per policy with its
    total.  Every text of the input and the header is escaped."""
    _check_header(header)
    return _html(public_list(frame), header)


def _html(listed: pl.DataFrame, header: NoticeHeader) -> str:
    tr = pl.concat_str(
        [
            pl.lit('<tr><td class="n">'),
            pl.col("no").cast(pl.String),
            pl.lit("</td><td>"),
            escape_expr(pl.col("benefit_period")),
            pl.lit("</td><td>"),
            pl.col("target").replace_strict(TARGETS),
            pl.lit("</td><td>"),
            escape_expr(pl.col("name")),
            pl.lit('</td><td class="id">'),
            escape_expr(pl.col("identifier")),
            pl.lit('</td><td class="n" data-fen="'),
            pl.col("amount_fen").cast(pl.String),
            pl.lit('">'),
            yuan_expr(pl.col("amount_fen"), grouped=True),
            pl.lit("</td></tr>\n"),
        ]
    )
    tables = (
        listed.with_columns(tr=tr)
        .group_by("policy_id", maintain_order=True)
        .agg(
            pl.col("policy_title").first(),
            pl.col("tr").str.join(""),
            pl.len().alias("count"),
            pl.col("amount_fen").sum().alias("amount_fen"),
        )
        .sort("policy_id")
    )
    count, total = listed.height, int(listed["amount_fen"].sum())
    e = _e
    out = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(header.title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(header.title)}</h1>",
        f'<p class="issuer">发布单位 Issued by: {e(header.issuer)}</p>',
        '<dl class="period">',
        f"<dt>发布日期 Published on</dt><dd>{_date(header.published_on)}</dd>",
        f"<dt>异议截止 Objections until</dt><dd>{_date(header.objection_deadline)}"
        "（含当日 inclusive）</dd>",
        *(
            [
                f"<dt>公示期 Period</dt><dd>{header.working_days} 个工作日 working days"
                "（发布当日不计 not counting the day of publication）</dd>"
            ]
            if header.working_days is not None
            else []
        ),
        "</dl>",
        f'<p class="summary">以下 {count:,} 项拟享受政策名单予以公示，合计 '
        f'<span data-fen="{total}">{e(format_yuan(total))}</span> 元。'
        f"The following {count:,} entitlements, {e(format_yuan(total))} yuan in all, are "
        "published for objections.</p>",
        '<section class="objection">',
        "<h2>异议方式 How to object</h2>",
        f"<p>{e(header.contact).replace(chr(10), '<br>')}</p>",
        "</section>",
        '<p class="privacy">个人姓名和身份证号码已作脱敏处理。'
        "Names and identity numbers of persons are masked.</p>",
    ]
    for row in tables.iter_rows(named=True):
        out += [
            f'<section class="policy" id="{e("policy-" + row["policy_id"])}">',
            f"<h2>{e(row['policy_title'])} <small>{e(row['policy_id'])}</small></h2>",
            "<table>",
            '<thead><tr><th class="n">序号<br>No.</th><th>享受期<br>Benefit period</th>'
            "<th>对象<br>Target</th><th>名称/姓名<br>Name</th>"
            "<th>统一社会信用代码/身份证号码<br>Identifier</th>"
            '<th class="n">金额（元）<br>Amount (yuan)</th></tr></thead>',
            "<tbody>",
            row["tr"].rstrip("\n"),
            "</tbody>",
            f'<tfoot><tr><th colspan="5">合计 Total: {row["count"]:,} 项 entitlements</th>'
            f'<th class="n" data-fen="{row["amount_fen"]}">'
            f"{e(format_yuan(row['amount_fen']))}</th></tr></tfoot>",
            "</table>",
            "</section>",
        ]
    if count == 0:
        out.append('<p class="none">本期无新增名单。No new entitlements.</p>')
    out += [
        f'<p class="sign">{e(header.issuer)}<br>{_date(header.published_on)}</p>',
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def write_notice_csv(frame: pl.DataFrame, path: Path) -> NoticeFile:
    """Write the notice's CSV to `path` (replacing it whole, never half-written)."""
    listed = public_list(frame)
    return _write(path, _csv(listed), listed)


def write_notice_html(frame: pl.DataFrame, header: NoticeHeader, path: Path) -> NoticeFile:
    """Write the notice's HTML page to `path` (replacing it whole, never half-written)."""
    _check_header(header)
    listed = public_list(frame)
    return _write(path, _html(listed, header).encode("utf-8"), listed)


# --- expressions ---------------------------------------------------------------------------


def yuan_expr(fen: pl.Expr, *, grouped: bool) -> pl.Expr:
    """Integer fen as yuan with two decimals, exactly (integer arithmetic, no float):
    123456 -> '1234.56', or with `grouped` thousands separators '1,234.56' as
    `common.money.format_yuan` writes it.  Amounts are not negative here."""
    whole = (fen // FEN_PER_YUAN).cast(pl.String)
    if grouped:
        whole = whole.str.reverse().str.extract_all(r"\d{1,3}").list.join(",").str.reverse()
    cents = (fen % FEN_PER_YUAN).cast(pl.String).str.zfill(2)
    return pl.concat_str([whole, pl.lit("."), cents])


def escape_expr(text: pl.Expr) -> pl.Expr:
    """HTML-escaped text, as `html.escape(text, quote=True)` gives it."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        text = text.str.replace_all(char, entity, literal=True)
    return text.str.replace_all("'", "&#x27;", literal=True)


def _no_formula(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.contains(FORMULA_START)).then("'" + text).otherwise(text)


# --- checks ----------------------------------------------------------------------------


def _checked(frame: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise JobError(
            f"the entitlements to publish lack the column(s) {', '.join(missing)}",
            fix=f"give a frame with the columns {', '.join(COLUMNS)}",
        )
    if not frame.schema["amount_fen"].is_integer():
        raise JobError(
            f"amount_fen is {frame.schema['amount_fen']}, not whole fen",
            fix="give amounts as integer fen (Int64), never as floats or yuan",
        )
    texts = [c for c in COLUMNS if c != "amount_fen"]
    wrong = [
        f"{c} ({frame.schema[c]})"
        for c in texts
        if not isinstance(frame.schema[c], pl.String | pl.Categorical | pl.Enum)
    ]
    if wrong:
        raise JobError(
            f"the entitlements to publish have columns that are not text: {', '.join(wrong)}",
            fix="give policy_id, policy_title, benefit_period, target, name and identifier as text",
        )
    out = frame.select(*(pl.col(c).cast(pl.String) for c in texts), pl.col("amount_fen"))
    out = out.with_columns(pl.col("amount_fen").cast(pl.Int64))
    nulls = {c: n for c, n in out.null_count().row(0, named=True).items() if n}
    empty = {c: n for c in texts if (n := out.filter(pl.col(c).str.strip_chars() == "").height)}
    if nulls or empty:
        said = ", ".join(f"{c} in {n} row(s)" for c, n in {**nulls, **empty}.items())
        raise JobError(
            f"the entitlements to publish have empty values: {said}",
            fix="a published entitlement names its policy, period, kind, name, identifier and amount",
        )
    bad = sorted(set(out["target"].to_list()) - set(TARGETS))
    if bad:
        raise JobError(
            f"unknown target(s) {', '.join(repr(b) for b in bad[:5])}",
            fix="target is 'enterprise' or 'person'",
        )
    negative = out.filter(pl.col("amount_fen") < 0).height
    if negative:
        raise JobError(
            f"{negative} entitlement(s) to publish have a negative amount",
            fix="publish new entitlements only; adjustments and reversals are not published",
        )
    twice = out.filter(pl.struct("policy_id", "benefit_period", "identifier").is_duplicated())
    if twice.height:
        first = twice.row(0, named=True)
        masked = mask_id if first["target"] == "person" else mask_entity
        who = masked(first["identifier"])
        raise JobError(
            f"{twice.height} rows are the same entitlement: {first['policy_id']} "
            f"{first['benefit_period']} for {who}, listed more than once",
            fix="an entity is entitled at most once per policy and benefit period: give each once",
        )
    titles = out.group_by("policy_id").agg(pl.col("policy_title").n_unique().alias("n"))
    two = sorted(titles.filter(pl.col("n") > 1)["policy_id"].to_list())
    if two:
        raise JobError(
            f"policy {two[0]!r} has more than one title among the entitlements",
            fix="give each policy's title as its policy file has it",
        )
    return out


def _check_header(h: NoticeHeader) -> None:
    for field in ("title", "issuer", "contact"):
        if not str(getattr(h, field)).strip():
            raise JobError(
                f"the notice has no {field}",
                fix="give the notice's title, its issuing body and how to object",
            )
    if h.working_days is not None and (isinstance(h.working_days, bool) or h.working_days < 1):
        raise JobError(
            f"the notice's objection period is {h.working_days!r} working days",
            fix="give the number of working days the deadline was counted with, at least 1",
        )
    if h.objection_deadline < h.published_on:
        raise JobError(
            f"the objection deadline {h.objection_deadline.isoformat()} is before the day of "
            f"publication {h.published_on.isoformat()}",
            fix="count the deadline with common.workdays.objection_deadline",
        )


# --- output ------------------------------------------------------------------------------


def _write(path: Path, data: bytes, listed: pl.DataFrame) -> NoticeFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
    return NoticeFile(
        path,
        hashlib.sha256(data).hexdigest(),
        listed.height,
        int(listed["amount_fen"].sum()),
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _date(d: dt.date) -> str:
    """A date for people: 2026年3月2日（星期一）, with its ISO form for machines."""
    zh = f"{d.year}年{d.month}月{d.day}日（星期{WEEKDAYS_ZH[d.weekday()]}）"
    return f'<time datetime="{d.isoformat()}">{zh}</time>'


STYLE = (
    'body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;'
    "margin:24px auto;max-width:960px;padding:0 16px;color:#1d2430;background:#fff}"
    "h1{font-size:22px;text-align:center}"
    "h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde5;padding-bottom:4px}"
    "h2 small{color:#586272;font-weight:normal;font-size:13px;margin-left:8px}"
    ".issuer,.privacy,.summary{font-size:14px}.privacy{color:#586272}"
    ".period{display:grid;grid-template-columns:max-content auto;gap:4px 16px;font-size:14px}"
    ".period dt{color:#586272}.period dd{margin:0}"
    "table{border-collapse:collapse;font-size:13px;width:100%}"
    "th,td{padding:4px 8px;border-bottom:1px solid #e6e9ee;text-align:left}"
    "th{background:#f3f6fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "td.id{font-family:ui-monospace,monospace}.sign{text-align:right;margin-top:32px}"
    ".none{color:#8a93a0}"
)
