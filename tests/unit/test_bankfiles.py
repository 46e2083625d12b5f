"""Bank files: pain.001 and the 代发 CSV written, pain.002 and CSV status replies read,
the simulated bank, and the vendored ISO 20022 schemas."""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import random
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from lxml import etree

from common.errors import DisburseError
from jobs.bankfiles import (
    PaymentHeader,
    read_pain002,
    read_status_csv,
    reason_words,
    simulate_bank_reply,
    validate_pain001,
    write_bulk_csv,
    write_pain001,
)
from jobs.bankfiles import pain001 as pain001_module
from jobs.bankfiles.codes import outcome, reason_words_expr
from jobs.bankfiles.xmlstream import PAIN001, PAIN002, XSD_DIR

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
NS1 = PAIN001.namespace
NS2 = PAIN002.namespace
# The digests of the ISO 20022 publications as shipped in pain001 0.0.74 (xsd/ORIGIN.md).
XSD_SHA256 = {
    "pain.001.001.09.xsd": "05440a7e84f695e7dbc6677082f43623cd7393881b76a5e8d648ae21d7d728e3",
    "pain.002.001.12.xsd": "13762890a02c44b05ea2fa4285b7c2e159a3bf4d518c8c11116cb4a2faa9f899",
}


def instructions(**override: list[object]) -> pl.DataFrame:
    """Three payments to people and a firm, Chinese names, one without remittance."""
    data: dict[str, list[object]] = {
        "end_to_end_id": ["JSR2026-000001", "JSR2026-000002", "JSR2026-000003"],
        "amount_fen": [1_500_000, 1, 9_999_999_999],
        "creditor_name": ["张伟", "欧阳娜娜", "杭州某某科技有限公司"],
        "creditor_account": ["6222021202000011111", "6217001210000022222", "19015101040012345"],
        "creditor_bank_code": ["102331000011", "105331000022", "103331000033"],
        "remittance": ["失业保险稳岗返还 2026年度", "一次性扩岗补助 2026-05", None],
    }
    data.update(override)
    return pl.DataFrame(data, schema_overrides={"amount_fen": pl.Int64, "remittance": pl.String})


HEADER = PaymentHeader(
    msg_id="JSR2026-B0001",
    created_at=datetime(2026, 5, 6, 9, 30, tzinfo=timezone(timedelta(hours=8))),
    initiating_party_name="杭州市人力资源和社会保障局",
    debtor_name="杭州市财政局稳岗返还专户",
    debtor_account="1202020000000000001",
    debtor_bank_code="102331000001",
    execution_on=date(2026, 5, 8),
)


def leftovers(folder: Path) -> list[str]:
    """Files in `folder`: a failed write leaves neither the target nor a temporary file."""
    return sorted(p.name for p in folder.iterdir())


# -- the vendored schemas ----------------------------------------------------------------


def test_vendored_xsds_are_the_iso_publications_byte_for_byte() -> None:
    found = {name: hashlib.sha256((XSD_DIR / name).read_bytes()).hexdigest() for name in XSD_SHA256}
    assert found == XSD_SHA256
    sums = (XSD_DIR / "SHA256SUMS").read_text().splitlines()
    assert sorted(sums) == sorted(f"{digest}  {name}" for name, digest in XSD_SHA256.items())
    origin = (XSD_DIR / "ORIGIN.md").read_text()
    assert all(digest in origin for digest in XSD_SHA256.values())


def test_the_schemas_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["jobs.bankfiles"]
    package = ROOT / "jobs" / "bankfiles"
    shipped = {
        p.relative_to(package).as_posix()
        for p in XSD_DIR.iterdir()
        if any(fnmatch.fnmatch(p.relative_to(package).as_posix(), pat) for pat in patterns)
    }
    assert shipped == {f"xsd/{name}" for name in (*XSD_SHA256, "SHA256SUMS", "ORIGIN.md")}


# -- pain.001 ---------------------------------------------------------------------------


def test_pain001_round_trip_keeps_ids_amounts_and_chinese_names(tmp_path: Path) -> None:
    given = instructions()
    written = write_pain001(given, HEADER, tmp_path / "batch.xml")
    assert (written.msg_id, written.count, written.ctrl_sum_fen) == (
        "JSR2026-B0001",
        3,
        10_001_500_000,
    )
    assert written.sha256 == hashlib.sha256((tmp_path / "batch.xml").read_bytes()).hexdigest()

    tree = etree.parse(str(tmp_path / "batch.xml"))
    ns = {"p": NS1}
    txs = tree.findall(".//p:CdtTrfTxInf", ns)
    back = pl.DataFrame(
        {
            "end_to_end_id": [tx.findtext("p:PmtId/p:EndToEndId", namespaces=ns) for tx in txs],
            "amount": [tx.findtext("p:Amt/p:InstdAmt", namespaces=ns) for tx in txs],
            "creditor_name": [tx.findtext("p:Cdtr/p:Nm", namespaces=ns) for tx in txs],
            "creditor_account": [
                tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=ns) for tx in txs
            ],
            "creditor_bank_code": [
                tx.findtext("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=ns)
                for tx in txs
            ],
            "remittance": [tx.findtext("p:RmtInf/p:Ustrd", namespaces=ns) for tx in txs],
        }
    )
    assert back["amount"].to_list() == ["15000.00", "0.01", "99999999.99"]
    assert back.drop("amount").equals(given.drop("amount_fen"))
    assert tree.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=ns) == "3"
    assert tree.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=ns) == "100015000.00"
    assert {el.get("Ccy") for el in tree.iterfind(".//p:InstdAmt", ns)} == {"CNY"}
    assert tree.findtext(".//p:DbtrAgt//p:ClrSysId/p:Cd", namespaces=ns) == "CNAPS"
    assert etree.XMLSchema(etree.parse(str(PAIN001.xsd))).validate(tree)


def test_reexport_is_byte_identical(tmp_path: Path) -> None:
    first = write_pain001(instructions(), HEADER, tmp_path / "a.xml")
    again = write_pain001(instructions(), HEADER, tmp_path / "b.xml")
    over = write_pain001(instructions(), HEADER, tmp_path / "a.xml")  # replaces the file
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()
    assert first.sha256 == again.sha256 == over.sha256
    csv_a = write_bulk_csv(instructions(), tmp_path / "a.csv")
    csv_b = write_bulk_csv(instructions(), tmp_path / "b.csv")
    assert csv_a.sha256 == csv_b.sha256
    assert leftovers(tmp_path) == ["a.csv", "a.xml", "b.csv", "b.xml"]


def test_batches_of_any_size_write_the_same_file(tmp_path: Path) -> None:
    one = write_pain001(instructions(), HEADER, tmp_path / "a.xml", batch_rows=1)
    all_ = write_pain001(instructions(), HEADER, tmp_path / "b.xml", batch_rows=10_000)
    assert one.sha256 == all_.sha256


@pytest.mark.parametrize(
    ("amounts", "ctrl_sum", "texts"),
    [
        ([1], "0.01", ["0.01"]),
        ([9_999_999_999], "99999999.99", ["99999999.99"]),
        ([1, 9_999_999_999], "100000000.00", ["0.01", "99999999.99"]),
        ([10, 100, 99], "2.09", ["0.10", "1.00", "0.99"]),
        # 64-bit fen would overflow summing these: the sum is taken in 128 bits
        ([10**15] * 10, "100000000000000.00", ["10000000000000.00"] * 10),
    ],
    ids=["one-fen", "99,999,999.99-yuan", "both", "tens", "ten-times-the-cap"],
)
def test_ctrl_sum_is_exact(
    tmp_path: Path, amounts: list[int], ctrl_sum: str, texts: list[str]
) -> None:
    n = len(amounts)
    given = pl.DataFrame(
        {
            "end_to_end_id": [f"E{i}" for i in range(n)],
            "amount_fen": amounts,
            "creditor_name": ["张伟"] * n,
            "creditor_account": ["6222021202000011111"] * n,
            "creditor_bank_code": ["102331000011"] * n,
            "remittance": [None] * n,
        },
        schema_overrides={"amount_fen": pl.Int64, "remittance": pl.String},
    )
    written = write_pain001(given, HEADER, tmp_path / "x.xml")
    assert written.ctrl_sum_fen == sum(amounts)
    tree = etree.parse(str(tmp_path / "x.xml"))
    assert tree.findtext(f".//{{{NS1}}}GrpHdr/{{{NS1}}}CtrlSum") == ctrl_sum
    assert tree.findtext(f".//{{{NS1}}}PmtInf/{{{NS1}}}CtrlSum") == ctrl_sum
    assert [el.text for el in tree.iterfind(f".//{{{NS1}}}InstdAmt")] == texts


def test_a_batch_past_what_ctrl_sum_can_carry_is_refused(tmp_path: Path) -> None:
    n = 1001  # 1001 * 10**15 fen: more than 18 digits of CtrlSum
    given = instructions().head(1).select(pl.all().repeat_by(n).explode())
    given = given.with_columns(
        end_to_end_id=pl.format("E{}", pl.int_range(n)), amount_fen=pl.lit(10**15, pl.Int64)
    )
    with pytest.raises(DisburseError, match="more than one ISO 20022 file can carry") as e:
        write_pain001(given, HEADER, tmp_path / "x.xml")
    assert "split the batch" in e.value.fix
    assert leftovers(tmp_path) == []


def test_golden_pain001_and_bulk_csv(tmp_path: Path, update_golden: bool) -> None:
    write_pain001(instructions(), HEADER, tmp_path / "batch.xml")
    write_bulk_csv(instructions(), tmp_path / "batch.csv")
    for name, golden in (
        ("batch.xml", "bankfiles-pain001.xml"),
        ("batch.csv", "bankfiles-bulk.csv"),
    ):
        if update_golden:
            (GOLDEN / golden).write_bytes((tmp_path / name).read_bytes())
        assert (tmp_path / name).read_bytes() == (GOLDEN / golden).read_bytes(), golden


def test_bulk_csv_opens_in_excel_as_utf8(tmp_path: Path) -> None:
    written = write_bulk_csv(instructions(), tmp_path / "b.csv")
    data = (tmp_path / "b.csv").read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    lines = data.removeprefix(codecs.BOM_UTF8).decode().split("\r\n")
    assert (
        lines[0]
        == "end_to_end_id,creditor_name,creditor_account,creditor_bank_code,amount_yuan,remittance"
    )
    assert (
        lines[2]
        == "JSR2026-000002,欧阳娜娜,6217001210000022222,105331000022,0.01,一次性扩岗补助 2026-05"
    )
    assert lines[3].endswith(",99999999.99,")  # no remittance: an empty field
    assert (written.count, written.ctrl_sum_fen, written.msg_id) == (3, 10_001_500_000, None)


def test_bulk_csv_refuses_what_excel_would_run_as_a_formula(tmp_path: Path) -> None:
    given = instructions(remittance=['=HYPERLINK("http://x")', None, None])
    with pytest.raises(DisburseError, match=r"Excel runs as a formula: row 1 \(JSR2026-000001\)"):
        write_bulk_csv(given, tmp_path / "b.csv")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            {"end_to_end_id": ["E" * 36, "B", "C"]},
            "row 1 (" + "E" * 35 + "): end_to_end_id has 36 characters",
        ),
        ({"end_to_end_id": ["A", "B", "A"]}, "row 1 (A): end_to_end_id is given to rows 1, 3"),
        (
            {"end_to_end_id": ["A", "B C", "D"]},
            "row 2 (B C): end_to_end_id has characters other than",
        ),
        ({"amount_fen": [1, 0, 3]}, "row 2 (JSR2026-000002): amount_fen is 0"),
        (
            {"creditor_name": ["张" + "伟" * 140, "B", "C"]},
            "row 1 (JSR2026-000001): creditor_name 张*******... has 141 characters",
        ),
        ({"creditor_name": ["张伟", "  ", "C"]}, "row 2 (JSR2026-000002): creditor_name is empty"),
        ({"creditor_name": ["张\n伟", "B", "C"]}, "creditor_name 张** has a line break"),
        (
            {"creditor_account": ["6222-0212-0200-0011", "1", "2"]},
            "creditor_account ***************0011 is not digits only",
        ),
        (
            {"creditor_bank_code": ["1023310000", "105331000022", "103331000033"]},
            "creditor_bank_code '1023310000' is not a CNAPS bank code (3 or 12 digits)",
        ),
        ({"remittance": ["稳" * 141, None, None]}, "remittance has 141 characters"),
    ],
    ids=[
        "id-too-long",
        "id-twice",
        "id-space",
        "zero-amount",
        "name-too-long",
        "blank-name",
        "line-break",
        "account-dashes",
        "bank-code",
        "remittance-too-long",
    ],
)
def test_bad_instructions_are_refused_before_writing(
    tmp_path: Path, override: dict[str, list[object]], says: str
) -> None:
    with pytest.raises(DisburseError) as e:
        write_pain001(instructions(**override), HEADER, tmp_path / "x.xml")
    assert says in e.value.message
    assert e.value.fix
    assert leftovers(tmp_path) == []


def test_refusals_mask_personal_data(tmp_path: Path) -> None:
    given = instructions(
        creditor_name=["张三丰" + "x" * 140, "B", "C"],
        creditor_account=["62220212020000111X9", "1", "2"],
    )
    with pytest.raises(DisburseError) as e:
        write_pain001(given, HEADER, tmp_path / "x.xml")
    text = e.value.render()
    assert "三丰" not in text
    assert "62220212020000" not in text
    assert "row 1" in text
    assert "11X9" in text  # the last 4 digits of an account locate it


def test_all_problems_are_reported_together() -> None:
    given = instructions(amount_fen=[0, -5, 1], creditor_bank_code=["1", "2", "102331000011"])
    with pytest.raises(DisburseError) as e:
        write_pain001(given, HEADER, Path("/nonexistent/x.xml"))
    lines = e.value.message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["row 1 (JSR2026-000001)"] * 2 + [
        "row 2 (JSR2026-000002)"
    ] * 2


def test_float_money_and_missing_columns_are_refused() -> None:
    with pytest.raises(DisburseError, match="amount_fen is Float64, not integer fen"):
        write_pain001(
            instructions().with_columns(pl.col("amount_fen").cast(pl.Float64)),
            HEADER,
            Path("x.xml"),
        )
    with pytest.raises(DisburseError, match="lack the column remittance"):
        write_pain001(instructions().drop("remittance"), HEADER, Path("x.xml"))


def test_a_bad_header_is_refused() -> None:
    header = PaymentHeader(
        msg_id="M" * 36,
        created_at=HEADER.created_at,
        initiating_party_name="",
        debtor_name="杭州市财政局",
        debtor_account="12020200000000000x1",
        debtor_bank_code="102331",
        execution_on=HEADER.execution_on,
        currency="USD",
    )
    with pytest.raises(DisburseError) as e:
        write_pain001(instructions(), header, Path("x.xml"))
    for says in (
        "msg_id",
        "initiating_party_name",
        "debtor_account ***************00x1",
        "debtor_bank_code",
        "CNY only",
    ):
        assert says in e.value.message


def test_a_file_failing_the_xsd_is_never_left_under_the_target_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pain001_module, "check_instructions", lambda _: None)  # force it past
    given = instructions(end_to_end_id=["JSR2026-000001", "X" * 40, "JSR2026-000003"])
    with pytest.raises(DisburseError) as e:
        write_pain001(given, HEADER, tmp_path / "batch.xml")
    assert e.value.file == str(tmp_path / "batch.xml")
    assert "EndToEndId" in e.value.message
    assert "maxLength" in e.value.message
    assert "{urn:" not in e.value.message
    assert e.value.line == 74  # the second transaction's EndToEndId
    assert leftovers(tmp_path) == []
    assert "Traceback" not in e.value.render()


def _edited(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    write_pain001(instructions(), HEADER, tmp_path / "good.xml")
    text = (tmp_path / "good.xml").read_text()
    assert old in text
    bad = tmp_path / "bad.xml"
    bad.write_text(text.replace(old, new, count))
    return bad


@pytest.mark.parametrize(
    ("old", "new", "count", "line", "says"),
    [
        (
            "      <PmtMtd>TRF</PmtMtd>\n",
            "",
            1,
            15,
            "Element 'NbOfTxs': This element is not expected",
        ),
        (
            "<CtrlSum>100015000.00</CtrlSum>",
            "<CtrlSum>100015000.01</CtrlSum>",
            1,
            4,
            "GrpHdr/CtrlSum says 100015000.01",
        ),
        (
            "<NbOfTxs>3</NbOfTxs>",
            "<NbOfTxs>4</NbOfTxs>",
            2,
            4,
            "GrpHdr/NbOfTxs says 4, the file holds 3",
        ),
        (">0.01<", ">0.010<", 1, 77, "amount '0.010' is not yuan with at most 2 decimals"),
        (
            "<ClrSysMmbId>\n              <ClrSysId>\n                <Cd>CNAPS</Cd>\n              </ClrSysId>\n              <MmbId>105331000022</MmbId>\n            </ClrSysMmbId>",
            "",
            1,
            72,
            "the creditor agent (CdtrAgt) names no bank",
        ),
    ],
    ids=["missing-element", "ctrl-sum", "nb-of-txs", "three-decimals", "empty-agent"],
)
def test_validate_pain001_names_the_first_problem_and_its_line(
    tmp_path: Path, old: str, new: str, count: int, line: int, says: str
) -> None:
    bad = _edited(tmp_path, old, new, count)
    with pytest.raises(DisburseError) as e:
        validate_pain001(bad)
    assert says in e.value.message
    assert (e.value.file, e.value.line) == (str(bad), line)


def test_validate_pain001_gives_what_a_good_file_holds(tmp_path: Path) -> None:
    written = write_pain001(instructions(), HEADER, tmp_path / "a.xml")
    assert validate_pain001(tmp_path / "a.xml") == written


# -- pain.002 ---------------------------------------------------------------------------


def pain002(body: str, *, group: str = "<GrpSts>PART</GrpSts>", ns: str = NS2) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{ns}">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>BANK-R1</MsgId><CreDtTm>2026-05-08T18:00:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>JSR2026-B0001</OrgnlMsgId>
      <OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>
      {group}
    </OrgnlGrpInfAndSts>
{body}  </CstmrPmtStsRpt>
</Document>
"""


def tx(e2e: str, status: str | None, reason: str | None = None, note: str | None = None) -> str:
    parts = [f"<OrgnlEndToEndId>{e2e}</OrgnlEndToEndId>"]
    if status:
        parts.append(f"<TxSts>{status}</TxSts>")
    if reason:
        extra = f"<AddtlInf>{note}</AddtlInf>" if note else ""
        parts.append(f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn>{extra}</StsRsnInf>")
    return "      <TxInfAndSts>" + "".join(parts) + "</TxInfAndSts>\n"


def block(*txs: str, status: str = "") -> str:
    sts = f"<PmtInfSts>{status}</PmtInfSts>" if status else ""
    return f"    <OrgnlPmtInfAndSts><OrgnlPmtInfId>JSR2026-B0001</OrgnlPmtInfId>{sts}\n{''.join(txs)}    </OrgnlPmtInfAndSts>\n"


IDS = ["JSR2026-000001", "JSR2026-000002", "JSR2026-000003"]


def test_pain002_settled_rejected_and_pending(tmp_path: Path) -> None:
    path = tmp_path / "reply.xml"
    path.write_text(
        pain002(
            block(
                tx(IDS[0], "ACSC"),
                tx(IDS[1], "RJCT", "AC04", "账户已销户"),
                tx(IDS[2], "ACSP"),
            )
        )
    )
    report = read_pain002(path)
    assert (report.msg_id, report.original_msg_id, report.format) == (
        "BANK-R1",
        "JSR2026-B0001",
        "pain.002.001.12",
    )
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    got = report.statuses.select(
        "end_to_end_id", "status", "bank_status", "reason_code", "note", "line"
    )
    assert got.rows() == [
        (IDS[0], "settled", "ACSC", None, None, 11),
        (IDS[1], "rejected", "RJCT", "AC04", "账户已销户", 12),
        (IDS[2], "pending", "ACSP", None, None, 13),
    ]
    assert not report.group_rejected
    resolved = report.resolve(IDS, msg_id="JSR2026-B0001")
    assert resolved["status"].to_list() == ["settled", "rejected", "pending"]
    assert resolved["scope"].to_list() == ["transaction"] * 3


def test_pain002_group_rejected_rejects_every_payment(tmp_path: Path) -> None:
    path = tmp_path / "reply.xml"
    path.write_text(
        pain002(
            "",
            group="<GrpSts>RJCT</GrpSts><StsRsnInf><Rsn><Cd>AM04</Cd></Rsn></StsRsnInf>",
        )
    )
    report = read_pain002(path)
    assert report.group_rejected
    assert report.statuses.height == 0
    assert report.levels.select("scope", "bank_status", "reason_code", "line").rows() == [
        ("group", "RJCT", "AM04", 8)
    ]
    resolved = report.resolve(IDS)
    assert resolved.select("status", "reason_code", "scope").unique().rows() == [
        ("rejected", "AM04", "group")
    ]
    assert resolved["end_to_end_id"].to_list() == IDS


def test_pain002_block_status_and_inherited_status(tmp_path: Path) -> None:
    path = tmp_path / "reply.xml"
    path.write_text(pain002(block(tx(IDS[0], None), status="ACSC"), group=""))
    report = read_pain002(path)
    assert report.statuses.select("status", "bank_status").rows() == [("settled", "ACSC")]
    resolved = report.resolve(IDS)  # the block's status reaches the payments it does not list
    assert resolved.select("status", "scope").rows() == [
        ("settled", "transaction"),
        ("settled", "payment_information"),
        ("settled", "payment_information"),
    ]


def test_pain002_nothing_said_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "reply.xml"
    path.write_text(pain002(block(tx(IDS[0], "RJCT", "AC01"))))  # PART, one listed
    resolved = read_pain002(path).resolve(IDS)
    assert resolved.select("status", "reason_code", "scope").rows() == [
        ("rejected", "AC01", "transaction"),
        ("pending", None, "none"),
        ("pending", None, "none"),
    ]


def test_resolve_refuses_another_batch(tmp_path: Path) -> None:
    path = tmp_path / "reply.xml"
    path.write_text(pain002(block(tx("SOMEONE-ELSE", "ACSC"))))
    report = read_pain002(path)
    with pytest.raises(DisburseError, match="answers message JSR2026-B0001, not OTHER"):
        report.resolve(IDS, msg_id="OTHER")
    with pytest.raises(
        DisburseError,
        match=r"names 1 payment\(s\) that are not in this batch \(line 11: SOMEONE-ELSE\)",
    ):
        report.resolve(IDS)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("this is not XML", 1, "is not well-formed XML: Start tag expected"),
        (
            pain002(block(tx(IDS[0], "ACSC"))).replace("</Document>\n", ""),
            14,
            "is not well-formed XML: Premature end of data",
        ),
        (
            pain002(block(tx(IDS[0], "ACSC")), ns=NS2.replace("001.12", "001.03")),
            1,
            "not pain.002.001.12 (it is pain.002.001.03)",
        ),
        (
            pain002(block(tx(IDS[0], "ACSC")), ns="urn:example"),
            1,
            "a document in namespace 'urn:example'",
        ),
        (
            pain002(block(tx(IDS[0], "ACSC"), tx(IDS[1], "SETTLED"))),
            12,
            "Element 'TxSts': [facet 'maxLength']",
        ),
        (
            pain002(block(tx(IDS[0], "ACSC"))).replace(
                "<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>", ""
            ),
            8,
            "Element 'GrpSts': This element is not expected",
        ),
        (
            pain002(block(tx(IDS[0], "ACSC")), group="<GrpSts>RJCT</GrpSts>"),
            11,
            "the message is rejected whole, yet payment JSR2026-000001 is ACSC",
        ),
        (
            pain002(block(tx(IDS[0], "ACSC"), tx(IDS[0], "RJCT"))),
            12,
            "payment JSR2026-000001 is given two outcomes (lines 11, 12)",
        ),
        (
            pain002(block("      <TxInfAndSts><TxSts>ACSC</TxSts></TxInfAndSts>\n")),
            11,
            "names no OrgnlEndToEndId",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
            + pain002(block(tx("&x;", "ACSC"))).split("\n", 1)[1],
            12,
            "is not well-formed XML: Entity 'x' not defined",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY x "y">]>\n'
            + pain002(block(tx(IDS[0], "ACSC"))).split("\n", 1)[1],
            1,
            "has a DOCTYPE declaration",
        ),
    ],
    ids=[
        "not-xml",
        "truncated",
        "other-version",
        "other-namespace",
        "schema-facet",
        "missing-element",
        "contradiction",
        "two-outcomes",
        "no-id",
        "external-entity",
        "doctype",
    ],
)
def test_bad_pain002_is_a_disburse_error_with_file_and_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = tmp_path / "reply.xml"
    path.write_text(text)
    with pytest.raises(DisburseError) as e:
        read_pain002(path)
    assert says in e.value.message, e.value.message
    assert (e.value.file, e.value.line) == (str(path), line)
    assert e.value.fix
    rendered = e.value.render()
    assert rendered.startswith(f"{path}:{line}: ")
    assert "Traceback" not in rendered


def test_a_missing_reply_is_a_disburse_error(tmp_path: Path) -> None:
    with pytest.raises(DisburseError, match="cannot read the bank status report"):
        read_pain002(tmp_path / "none.xml")


# -- CSV status files -------------------------------------------------------------------


def test_status_csv_with_bom_words_and_returns(tmp_path: Path) -> None:
    path = tmp_path / "status.csv"
    path.write_bytes(
        codecs.BOM_UTF8
        + (
            "End_To_End_Id,Status,Reason_Code,Note\r\n"
            "JSR2026-000001,成功,,\r\n"
            "JSR2026-000002,退票,ac04,账户已销户\r\n"
            "\r\n"
            'JSR2026-000003,RJCT,BE01,"户名不符, 请核对"\r\n'
        ).encode()
    )
    report = read_status_csv(path)
    assert report.format == "csv"
    assert report.original_msg_id is None
    assert report.statuses.select(
        "end_to_end_id", "status", "bank_status", "reason_code", "note", "line"
    ).rows() == [
        (IDS[0], "settled", "成功", None, None, 2),
        (IDS[1], "rejected", "退票", "AC04", "账户已销户", 3),
        (IDS[2], "rejected", "RJCT", "BE01", "户名不符, 请核对", 5),
    ]
    assert report.resolve(IDS)["status"].to_list() == ["settled", "rejected", "rejected"]


def test_status_csv_bad_rows_are_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "status.csv"
    path.write_text(
        "end_to_end_id,status,reason_code\n"
        "JSR2026-000001,settled,\n"
        "JSR2026-000002,done,\n"
        "JSR2026-000003,rejected,AC01,extra\n"
        "JSR2026-000004,欧阳娜娜,\n"
        ",rejected,TOOLONG\n",
        encoding="utf-8",
    )
    with pytest.raises(DisburseError) as e:
        read_status_csv(path)
    lines = [line.strip() for line in e.value.message.splitlines()[1:]]
    assert lines[0].startswith("line 3: status 'done' is not a status disburse knows")
    assert lines[1] == "line 4: 4 fields where the header names 3"
    assert lines[2].startswith("line 5: status '欧***' is not a status")  # a name, masked
    assert lines[3] == "line 6: end_to_end_id is empty"
    assert lines[4].startswith("line 6: reason_code 'TOOLONG' is not an ISO 20022 reason code")
    assert (e.value.file, e.value.line) == (str(path), 3)


def test_status_csv_in_gbk_is_refused_with_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "status.csv"
    path.write_bytes("end_to_end_id,status,reason_code\nJSR2026-000001,成功,\n".encode("gbk"))
    with pytest.raises(DisburseError) as e:
        read_status_csv(path)
    assert "the file is not UTF-8 (it reads as GBK" in e.value.message
    assert e.value.line == 2
    assert "CSV UTF-8" in e.value.fix


def test_status_csv_without_a_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "status.csv"
    path.write_text("id,status\nJSR2026-000001,成功\n", encoding="utf-8")
    with pytest.raises(DisburseError, match="lacks the columns end_to_end_id, reason_code"):
        read_status_csv(path)


# -- reasons and outcomes ---------------------------------------------------------------


def test_reason_codes_in_plain_words() -> None:
    assert reason_words("AC04") == "AC04 closed account"
    assert reason_words("MD07", "zh") == "MD07 账户持有人已身故"
    assert "no words for" in reason_words("ZZ99")
    words = pl.Series(["AC01", None, "ZZ99"]).to_frame("c").select(reason_words_expr(pl.col("c")))
    assert words.to_series().to_list() == [
        "AC01 wrong account number",
        None,
        "ZZ99 (a reason code disburse has no words for)",
    ]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ACSC", "settled"),
        ("ACCC", "settled"),
        ("RJCT", "rejected"),
        ("CANC", "rejected"),
        ("ACSP", "pending"),
        ("ACTC", "pending"),
        ("PDNG", "pending"),
        ("WHAT", "pending"),
        (None, "pending"),
    ],
)
def test_status_codes_come_down_to_three_outcomes(code: str | None, expected: str) -> None:
    assert outcome(code) == expected


# -- the simulated bank -----------------------------------------------------------------


def many(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "end_to_end_id": [f"JSR2026-{i:06d}" for i in range(n)],
            "amount_fen": [100 * (i + 1) for i in range(n)],
            "creditor_name": ["张伟"] * n,
            "creditor_account": [f"6222{i:015d}" for i in range(n)],
            "creditor_bank_code": ["102331000011"] * n,
            "remittance": ["失业保险稳岗返还 2026年度"] * n,
        },
        schema_overrides={"amount_fen": pl.Int64},
    )


def test_simulated_reply_parses_back_with_the_right_counts(tmp_path: Path) -> None:
    given = many(200)
    reply = simulate_bank_reply(
        given,
        HEADER,
        seed=7,
        return_rate=0.1,
        xml_target=tmp_path / "r.xml",
        csv_target=tmp_path / "r.csv",
    )
    assert (reply.settled, reply.rejected) == (180, 20)
    xml, csv = read_pain002(tmp_path / "r.xml"), read_status_csv(tmp_path / "r.csv")
    assert xml.original_msg_id == HEADER.msg_id
    for report in (xml, csv):
        counts = dict(report.statuses.group_by("status").len().iter_rows())
        assert counts == {"settled": 180, "rejected": 20}
        reasons = report.statuses.filter(pl.col("status") == "rejected")["reason_code"]
        assert reasons.null_count() == 0
        assert set(reasons) <= {
            "AC01",
            "AC04",
            "BE01",
            "AC06",
            "MD07",
            "RC01",
        }
    same = ["end_to_end_id", "status", "reason_code"]
    assert xml.statuses.select(same).equals(csv.statuses.select(same))
    resolved = xml.resolve(given["end_to_end_id"], msg_id=HEADER.msg_id)
    assert resolved["scope"].unique().to_list() == ["transaction"]


def test_simulated_reply_is_deterministic_and_ignores_row_order(tmp_path: Path) -> None:
    given = many(50)
    order = list(range(50))
    random.Random(1).shuffle(order)
    shuffled = given[order]
    a = simulate_bank_reply(given, HEADER, seed=3, return_rate=0.2, xml_target=tmp_path / "a.xml")
    b = simulate_bank_reply(given, HEADER, seed=3, return_rate=0.2, xml_target=tmp_path / "b.xml")
    simulate_bank_reply(shuffled, HEADER, seed=3, return_rate=0.2, xml_target=tmp_path / "c.xml")
    simulate_bank_reply(given, HEADER, seed=4, return_rate=0.2, xml_target=tmp_path / "d.xml")
    assert a.sha256 == b.sha256

    def rejected(path: Path) -> set[str]:
        return set(
            read_pain002(path).statuses.filter(pl.col("status") == "rejected")["end_to_end_id"]
        )

    assert rejected(tmp_path / "a.xml") == rejected(tmp_path / "c.xml")
    assert rejected(tmp_path / "a.xml") != rejected(tmp_path / "d.xml")
    assert len(rejected(tmp_path / "d.xml")) == 10


def test_simulated_whole_file_rejection(tmp_path: Path) -> None:
    reply = simulate_bank_reply(
        many(5), HEADER, seed=1, return_rate=0, xml_target=tmp_path / "r.xml", reject_all="AM04"
    )
    assert (reply.settled, reply.rejected) == (0, 5)
    report = read_pain002(tmp_path / "r.xml")
    assert report.group_rejected
    assert report.statuses.height == 0
    assert set(report.resolve(many(5)["end_to_end_id"])["reason_code"]) == {"AM04"}


def test_simulated_rates_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DisburseError, match="not between 0 and 1"):
        simulate_bank_reply(many(2), HEADER, seed=1, return_rate=1.5, xml_target=tmp_path / "r.xml")


def test_schema_messages_name_elements_plainly_and_mask_long_numbers() -> None:
    from jobs.bankfiles.xmlstream import _plain

    said = _plain(
        f"Element '{{{NS2}}}IBAN': [facet 'pattern'] The value 'DE89370400440532013000' is "
        "not accepted by the pattern '[A-Z]{2,2}[0-9]{2,2}[a-zA-Z0-9]{1,30}'."
    )
    assert said.startswith("Element 'IBAN': [facet 'pattern'] The value 'DE****************3000'")
