"""What a bank's status codes mean for a payment, and its reason codes in plain words.

Every status a bank reports comes down to one of three outcomes (`Outcome`):

| outcome | ISO 20022 status codes (ExternalPaymentTransactionStatus1Code / GroupStatus) | CSV words |
| --- | --- | --- |
| settled | ACSC (settlement on the debtor's account completed), ACCC (credited to the creditor's account) | settled, success, paid, 成功 |
| rejected | RJCT (rejected), CANC (cancelled) | rejected, failed, 失败; returned, 退票, 退回 |
| pending | ACTC, ACCP, ACSP, ACWC, ACWP, ACFC, ACIS, ACPD, PDNG, RCVD, PATC, PRES, BLCK, PART; in a pain.002, any code not listed here | pending, processing, 处理中 |

Only settled and rejected move money in the ledger; pending changes nothing, so an
unknown code in a pain.002 is pending, never a guess (a CSV status file
may use only the words and codes listed: anything else there is a typing error).  A return (the payee's bank sends the money
back after it left: 退票) is a rejection whose raw status says `returned`: whether it
undoes a settlement is the ledger's to know (the payment's state), not the file's.

Reason codes are ISO 20022 ExternalStatusReason1Code; `REASONS` gives the ones Chinese
banks use for 代发 in English and Chinese.
"""

from __future__ import annotations

from typing import Literal, get_args

import polars as pl

Outcome = Literal["settled", "rejected", "pending"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)

SETTLED_CODES = frozenset({"ACSC", "ACCC"})
REJECTED_CODES = frozenset({"RJCT", "CANC"})
PENDING_CODES = frozenset(
    {
        "ACTC",
        "ACCP",
        "ACSP",
        "ACWC",
        "ACWP",
        "ACFC",
        "ACIS",
        "ACPD",
        "PDNG",
        "RCVD",
        "PATC",
        "PRES",
        "BLCK",
        "PART",
    }
)
ISO_STATUS_CODES = SETTLED_CODES | REJECTED_CODES | PENDING_CODES  # the codes a CSV may use
RETURNED = "returned"  # the raw status of a CSV row that says the payment came back

# Words a bank's CSV status file may use, lower-cased, and the outcome each means.
CSV_WORDS: dict[str, Outcome] = {
    "settled": "settled",
    "success": "settled",
    "succeeded": "settled",
    "paid": "settled",
    "成功": "settled",
    "rejected": "rejected",
    "failed": "rejected",
    "失败": "rejected",
    RETURNED: "rejected",
    "退票": "rejected",
    "退回": "rejected",
    "pending": "pending",
    "processing": "pending",
    "处理中": "pending",
}
RETURN_WORDS = frozenset({RETURNED, "退票", "退回"})


def outcome(code: str | None) -> Outcome:
    """The outcome of an ISO 20022 transaction or group status code (pending when unknown)."""
    if code in SETTLED_CODES:
        return "settled"
    if code in REJECTED_CODES:
        return "rejected"
    return "pending"


def outcome_expr(code: pl.Expr) -> pl.Expr:
    """Polars: `outcome` of every status code."""
    return (
        pl.when(code.is_in(list(SETTLED_CODES)))
        .then(pl.lit("settled"))
        .when(code.is_in(list(REJECTED_CODES)))
        .then(pl.lit("rejected"))
        .otherwise(pl.lit("pending"))
        .cast(pl.Enum(OUTCOMES))
    )


# ISO 20022 ExternalStatusReason1Code: (English, Chinese).
REASONS: dict[str, tuple[str, str]] = {
    "AC01": ("wrong account number", "账号错误"),
    "AC02": ("invalid debtor account number", "付款账号无效"),
    "AC03": ("invalid creditor account number", "收款账号无效"),
    "AC04": ("closed account", "账户已销户"),
    "AC05": ("closed debtor account", "付款账户已销户"),
    "AC06": ("blocked account", "账户冻结或止付"),
    "AC07": ("closed creditor account", "收款账户已销户"),
    "AG01": ("transaction forbidden on this account", "该账户不允许此类交易"),
    "AG02": ("invalid bank operation code", "业务种类无效"),
    "AM01": ("zero amount", "金额为零"),
    "AM02": ("amount not allowed", "金额超出允许范围"),
    "AM03": ("currency not allowed", "币种不允许"),
    "AM04": ("insufficient funds", "余额不足"),
    "AM05": ("duplicate payment", "重复支付"),
    "AM09": ("wrong amount", "金额错误"),
    "AM10": ("control sum does not match", "总金额与明细不符"),
    "BE01": ("name does not match the account", "户名与账号不符"),
    "BE05": ("initiating party not recognised", "发起方未登记"),
    "BE06": ("unknown payee", "收款人不存在"),
    "DT01": ("invalid date", "日期无效"),
    "DUPL": ("duplicate payment", "重复支付"),
    "FF01": ("invalid file format", "文件格式错误"),
    "MD07": ("account holder deceased", "账户持有人已身故"),
    "MS02": ("refused by the payee, no reason given", "收款人拒收(未说明原因)"),
    "MS03": ("refused by the bank, no reason given", "银行拒绝(未说明原因)"),
    "NARR": ("see the bank's note", "见银行附言"),
    "RC01": ("wrong bank code", "行号错误"),
    "RR04": ("regulatory reason", "监管原因"),
    "TM01": ("received after the bank's cut-off time", "超过银行截止时间"),
}


def reason_words(code: str | None, lang: Literal["en", "zh"] = "en") -> str:
    """A reason code in plain words: 'AC04 closed account'; unknown codes say so."""
    if not code:
        return ""
    words = REASONS.get(code)
    if words is None:
        return f"{code} (a reason code disburse has no words for: see ISO 20022 ExternalStatusReason1Code)"
    return f"{code} {words[0] if lang == 'en' else words[1]}"


def reason_words_expr(code: pl.Expr, lang: Literal["en", "zh"] = "en") -> pl.Expr:
    """Polars: `reason_words` of every code (null stays null)."""
    table = {k: f"{k} {v[0] if lang == 'en' else v[1]}" for k, v in REASONS.items()}
    return code.replace_strict(
        table,
        default=pl.format("{} (a reason code disburse has no words for)", code),
        return_dtype=pl.String,
    )
