"""Errors for people: one root error, positioned problems, and one registry of codes.

Every error a person can act on is a `DisburseError`: what is wrong in the reader's
words, a `fix:` line, and where it can be said, a file position and a stable code.
The CLI shows it without a traceback.  Problems in files people write (policy files,
catalogues) are `Problem`s, collected for a whole file before anything is reported
and raised together as one `ProblemsError`.

Each code has one meaning, given in `Code`; it is chosen where the problem is found,
never worked out from the message.  docs/policies.md's table of codes and the
bad-policy tests (tests/bad_policies/, one broken file per code) read this registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Code(StrEnum):
    """Every error code a person can meet, with its one meaning (`meaning`) and where it
    arises (`scope`: file, catalogue, policy, features, sources, calendar, data or run)."""

    meaning: str
    scope: str

    @property
    def warning(self) -> bool:
        """A warning: the file is accepted, but an officer should look."""
        return self.value.startswith("W")

    def __new__(cls, code: str, scope: str, meaning: str) -> Code:
        obj = str.__new__(cls, code)
        obj._value_ = code
        obj.meaning = meaning
        obj.scope = scope
        return obj

    # files people write, whatever they hold
    FILE_UNREADABLE = (
        "E000",
        "file",
        "the file cannot be read: missing, a folder, or not UTF-8 text",
    )
    YAML_SYNTAX = (
        "E001",
        "file",
        "YAML syntax: the file is not valid YAML, or a key is not a plain value",
    )
    DUPLICATE_KEY = "E002", "file", "a key is given twice (YAML would silently keep the last)"
    AMBIGUOUS_BOOL = "E003", "file", "`yes`/`no`/`on`/`off`: YAML 1.1 reads them as booleans"
    NO_POLICY_FILES = "E004", "file", "no policy files where policies were expected"
    YAML_VALUE = (
        "E005",
        "file",
        "a value YAML cannot read: an impossible date, a tag, a merge of a plain value",
    )
    YAML_TOO_LARGE = (
        "E006",
        "file",
        "the file is larger, or expands through aliases to more, than a policy file can be",
    )
    AMBIGUOUS_NUMBER = (
        "E007",
        "file",
        "a number YAML 1.1 reads in another base: 010 is 8, 1:30 is 90",
    )
    # the source catalogue, policies/sources.yaml
    SOURCE_UNKNOWN_KEY = "E010", "sources", "the source catalogue has a key it does not know"
    SOURCE_MISSING_KEY = "E011", "sources", "the source catalogue lacks a key it needs"
    SOURCE_BAD_VALUE = "E012", "sources", "a value of the source catalogue is not allowed"
    # the catalogue folder (--catalogue DIR, $DISBURSE_CATALOGUE): features.yaml and sources.yaml
    CATALOGUE_NOT_FOUND = (
        "E020",
        "catalogue",
        "the catalogue folder given does not exist, or is a file",
    )
    CATALOGUE_INCOMPLETE = (
        "E021",
        "catalogue",
        "the catalogue folder given lacks features.yaml or sources.yaml",
    )
    CATALOGUE_TWICE = (
        "E022",
        "catalogue",
        "a policy folder holds a features.yaml of its own, and the catalogue folder given another",
    )
    # expressions
    EXPR_SYNTAX = (
        "E101",
        "policy",
        "an expression cannot be read (a stray character, a missing bracket)",
    )
    UNKNOWN_FUNCTION = "E102", "policy", "a function the language does not have"
    ARITY = "E103", "policy", "a function is given the wrong number of arguments"
    UNKNOWN_NAME = (
        "E104",
        "policy",
        "a name in an expression is no feature, let, parameter or run date",
    )
    TYPE_MISMATCH = (
        "E105",
        "policy",
        "types do not fit (money with a bare number, text with `<`, ...)",
    )
    UNKNOWN_RELATION = "E106", "policy", "a relation the feature catalogue does not declare"
    DUPLICATE_ID = "E107", "policy", "a policy id or condition id is used twice"
    PARAM_DATES = "E108", "policy", "a parameter's dated values are not in increasing date order"
    AMOUNT_NOT_MONEY = "E109", "policy", "an amount, cap or bracket amount is not money"
    # the shape of a policy file
    UNKNOWN_KEY = (
        "E110",
        "policy",
        "a key the format of a policy file or the feature catalogue does not have",
    )
    MISSING_KEY = (
        "E111",
        "policy",
        "a key the format of a policy file or the feature catalogue requires is missing",
    )
    BAD_VALUE = (
        "E112",
        "policy",
        "a value the format of a policy file or the feature catalogue does not allow",
    )
    NAME_CLASH = (
        "E113",
        "policy",
        "two things share a name: a parameter, let or define and a feature, relation, run date, "
        "function or another of the policy's; or features, relations, attributes and lists",
    )
    PARAM_NO_VALUE = "E114", "policy", "a parameter has no value in force on the run's date"
    BRACKET_INCOMPLETE = (
        "E115",
        "policy",
        "a tier bracket lacks its amount (step) or rate (marginal)",
    )
    MARGINAL_NOT_MONEY = "E116", "policy", "marginal tiers apply rates, so they tier by money"
    PRORATE_PERIOD = (
        "E117",
        "policy",
        "proration by month needs a benefit period of a year or quarter",
    )
    FUNCTION_CONTEXT = (
        "E118",
        "policy",
        "a function used where it has no meaning (listed() without an entity, age_on() without birth_on)",
    )
    TOO_COMPLEX = (
        "E119",
        "policy",
        "past a limit no real policy reaches: nesting, depth, length, digits, conditions, rows",
    )
    # worked examples (tests:)
    CASE_UNKNOWN_FEATURE = (
        "E120",
        "policy",
        "a worked example or scenario gives a value that is no feature or relation",
    )
    CASE_UNKNOWN_REASON = (
        "E121",
        "policy",
        "a worked example or scenario expects a reason that is no condition id",
    )
    CASE_NO_AMOUNT = "E122", "policy", "a worked example expects eligibility but gives no amount"
    CASE_BAD_VALUE = (
        "E123",
        "policy",
        "a worked example or scenario gives a value that is not of the feature's kind",
    )
    UNKNOWN_VARIANT = (
        "E125",
        "policy",
        "a policy, a worked example or a scenario names a variant the file does not declare",
    )
    UNKNOWN_SETTING = (
        "E126",
        "policy",
        "a variant, a worked example or a scenario sets a parameter or let the policy does not have",
    )
    NOT_PAYABLE = (
        "E129",
        "policy",
        "a policy pays an entity kind money cannot go to (a household): it names a payee",
    )
    UNKNOWN_ACCOUNT = (
        "E139",
        "policy",
        "payment: names an account the payee's entity kind does not have in the catalogue",
    )
    CASE_FAILED = (
        "E124",
        "policy",
        "a worked example of the policy does not hold: the policy is not run or simulated",
    )
    SCENARIO_WRONG = (
        "E127",
        "policy",
        "a scenario cannot be run as written: runs out of date order or outside the policy's "
        "validity, a run that expects nothing, a total over no benefit period",
    )
    SCENARIO_FAILED = (
        "E128",
        "policy",
        "a scenario of the policy does not hold (amounts, transfers or totals over its runs): "
        "the policy is not run or simulated",
    )
    # the feature catalogue, policies/features.yaml
    UNKNOWN_SOURCE = (
        "E130",
        "features",
        "the feature catalogue reads a source the source catalogue lacks",
    )
    UNKNOWN_COLUMN = (
        "E131",
        "features",
        "the feature catalogue reads a column its source lacks",
    )
    NOT_ENTITY_SOURCE = (
        "E132",
        "features",
        "entities: names a source that does not define that entity kind (entity: in sources.yaml)",
    )
    NOT_KEYED_BY_ENTITY = (
        "E133",
        "features",
        "a feature, relation key or the credit lists read rows that do not name the entity",
    )
    ACCOUNTS_NOT_PAYABLE = (
        "E134",
        "features",
        "accounts: declared on an entity kind money is not paid to (payable: false)",
    )
    UNKNOWN_ENTITY = (
        "E135",
        "features",
        "a feature, relation or policy names an entity kind the feature catalogue does not declare",
    )
    RELATION_CHAIN = (
        "E136",
        "features",
        "a relation's via steps do not lead on from one another, or lead back to it",
    )
    ONCE_PER_RELATION = (
        "E137",
        "policy",
        "once_per names a relation the policy does not count exactly once with count() or sum()",
    )
    ONCE_PER_ACROSS = (
        "E138",
        "policy",
        "once_per across names a policy that is not checked with it, or that counts otherwise",
    )
    EVENTS_NOT_ONE_AT_A_TIME = (
        "E149",
        "policy",
        "events: true on a policy that cannot be decided one entity at a time (a budget "
        "shared pro rata, members counted once_per)",
    )
    BACK_PAY_ONCE = (
        "E142",
        "policy",
        "back_pay on a policy paid once (benefit_period: once has no past period to pay)",
    )
    BACK_PAY_ONCE_PER = (
        "E143",
        "policy",
        "back_pay with once_per: a past period's members could count again",
    )
    # the working-day calendar, policies/holidays.yaml (finance keeps it)
    CALENDAR_UNKNOWN_KEY = "E144", "calendar", "the working-day calendar has a key it does not know"
    CALENDAR_MISSING_KEY = (
        "E145",
        "calendar",
        "the working-day calendar lacks a key it needs (a provisional year's note, a notice's date)",
    )
    CALENDAR_BAD_VALUE = (
        "E146",
        "calendar",
        "a value of the working-day calendar is not allowed: a date outside its year, a break "
        "ending before it starts, a working day that is no weekend day",
    )
    CALENDAR_DATE_TWICE = (
        "E147",
        "calendar",
        "a date is listed twice in the working-day calendar: as a day off and as a working "
        "day, or twice as either",
    )
    CALENDAR_NO_YEAR = (
        "E148",
        "calendar",
        "a date asked about lies in a year the working-day calendar does not list",
    )
    # what a careful officer wants refused
    UNKNOWN_LIST = (
        "E150",
        "policy",
        "listed() names a credit list the feature catalogue does not declare",
    )
    AMOUNT_WRITTEN_WRONG = (
        "E151",
        "policy",
        "an amount written negative, or with a fraction of a fen",
    )
    BRACKETS_OVERLAP = (
        "E152",
        "policy",
        "tier brackets written reversed (from >= to) or overlapping",
    )
    # warnings: the file is accepted, the officer is asked to look
    RATE_OVER_100 = "W201", "policy", "a rate over 100%"
    BARE_MULTIPLIER = (
        "W202",
        "policy",
        "money multiplied by a bare number where a percentage may be meant",
    )
    UNBANKED_PAYEE = (
        "W203",
        "policy",
        "a payee may have no bank account and the policy does not say what then",
    )
    # choosing policies
    UNKNOWN_POLICY = "E140", "run", "no policy has the id asked for"
    OTHER_POLICY = "E141", "run", "a file to compare with holds another policy"
    # delivered source files (ingest)
    DATA_UNREADABLE = (
        "E160",
        "data",
        "a source file cannot be read: damaged Parquet pages, or not a file of its format",
    )
    DATA_NOT_UTF8 = "E161", "data", "a CSV source file is not UTF-8 text (GBK, UTF-16, ...)"
    DATA_CSV_SHAPE = (
        "E162",
        "data",
        "a CSV row has more or fewer fields than the header, or a quote is never closed",
    )
    DATA_SUM_RANGE = (
        "E163",
        "data",
        "a column's sum over one entity's rows could pass the 64-bit range features add in",
    )


class DisburseError(Exception):
    """What is wrong, how to fix it, and where it can be said: a code and a file position.

    The root of every error a person can act on; rendered without a traceback."""

    def __init__(
        self,
        message: str,
        *,
        fix: str = "",
        code: Code | None = None,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        self.message = message
        self.fix = fix
        self.code = code
        self.file, self.line, self.col = file, line, col
        super().__init__(self.render())

    def render(self) -> str:
        """`file:line:col: CODE message` (as much of it as is known) and an indented fix line."""
        where = ":".join(str(x) for x in (self.file, self.line, self.col) if x is not None)
        head = " ".join(
            x for x in (f"{where}:" if where else "", self.code or "", self.message) if x
        )
        return f"{head}\n  fix: {self.fix}" if self.fix else head


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong in a file a person wrote, positioned at 1-based line and column."""

    file: str
    line: int
    col: int
    code: Code
    message: str
    fix: str  # every problem says how to fix it

    def render(self) -> str:
        """`file:line:col: CODE message` and, when there is one, an indented `fix:` line."""
        head = f"{self.file}:{self.line}:{self.col}: {self.code} {self.message}"
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class ProblemsError(DisburseError):
    """Raised with every problem found in one or more files, sorted by position."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(problems)
        first = self.problems[0] if self.problems else None
        super().__init__(
            "\n".join(p.render() for p in self.problems),
            code=first.code if first else None,
        )

    def render(self) -> str:
        """All problems, one block each."""
        return "\n".join(p.render() for p in self.problems)


def close_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names that look most like `name` (for a 'did you mean' hint)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def article(noun: str) -> str:
    """The noun with its indefinite article, for messages: 'an enterprise', 'a person'."""
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def did_you_mean(name: str, known: Sequence[str], what: str) -> str:
    """A fix line: a close name if there is one, else the allowed values."""
    close = close_names(name, known)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(sorted(known)[:12])
    more = ", ..." if len(known) > 12 else ""
    return f"{what} are: {shown}{more}"


def codes_table() -> str:
    """The registry as a Markdown table (docs/policies.md holds it; a test keeps them equal)."""
    rows = [f"| {c.value} | {c.scope} | {c.meaning} |" for c in Code]
    return "\n".join(["| code | about | meaning |", "| --- | --- | --- |", *rows])
