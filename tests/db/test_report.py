"""`disburse report`: the figures on the page equal the ledger summary and the run's own
counts, and the page renders in headless Chromium to something that is not blank."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from disburse.cli import main
from jobs.catalogue import load_source_catalogue
from jobs.policies import features_path, load_policies
from jobs.run import RunRequest, run_nightly_on
from ledgers.audit import summary
from ledgers.db import open_engine

AS_OF = dt.date(2026, 3, 15)


@pytest.fixture
def report(city: Path, db_url: str, tmp_path: Path) -> tuple[str, Path, dict[str, Any]]:
    """One nightly run on `db_url`, its report written by the command, and the summary the
    run returned (what it entitled and posted, counted by the run itself)."""
    cat = load_source_catalogue()
    with open_engine(db_url, init=True) as engine:
        outcome = run_nightly_on(
            engine,
            RunRequest(city, AS_OF, tmp_path / "store", features_path(None)),
            catalogue=cat,
            pset=load_policies(cat),
        )
    page = tmp_path / "report.html"
    out = CliRunner().invoke(main, ["report", "--db", db_url, "--run", "1", "--out", str(page)])
    assert out.exit_code == 0, out.output
    return db_url, page, outcome.summary.to_json()


class Figures(HTMLParser):
    """The ledger table's rows and the total cards, from their data- attributes; the text
    the cards show; the quarantine table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.cells: dict[str, str] | None = None
        self.total_fen: int | None = None
        self.total_count: int | None = None
        self.shown: dict[str, str] = {}  # id of a total card -> the text it shows
        self.card: str | None = None
        self.in_ledger = False
        self.in_quarantine = False
        self.quarantine: list[list[str]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("src", "href"):
            if key in a:
                self.external.append(a[key])
        if tag == "table":
            self.in_ledger = a.get("id") == "ledger"
            self.in_quarantine = a.get("id") == "quarantine"
        if a.get("id") == "total-amount":
            self.total_fen = int(a["data-fen"])
        if a.get("id") == "total-count":
            self.total_count = int(a["data-count"])
        if a.get("id") in ("total-amount", "total-count"):
            self.card = a["id"]
            self.shown[self.card] = ""
        if self.in_quarantine and tag == "tr":
            self.quarantine.append([])
        if self.in_ledger and tag == "tr" and "data-policy" in a:
            self.cells = {"policy_id": a["data-policy"], "benefit_period": a["data-period"]}
            self.rows.append(self.cells)
        if self.cells is not None and tag == "td":
            if "data-count" in a:
                self.cells["count"] = a["data-count"]
            if "data-fen" in a:
                self.cells["amount_fen"] = a["data-fen"]

    def handle_data(self, data: str) -> None:
        if self.card is not None:
            self.shown[self.card] += data
        if self.in_quarantine and self.quarantine and data.strip():
            self.quarantine[-1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_ledger = self.in_quarantine = False
        if tag == "tr":
            self.cells = None
        if tag == "b":
            self.card = None


def yuan_text(fen: int) -> str:
    """A positive amount as the page shows it: 1,234.56."""
    return f"{fen // 100:,}.{fen % 100:02d}"


def test_the_figures_equal_the_ledger_summary(report: tuple[str, Path, dict[str, Any]]) -> None:
    db_url, page, run = report
    parsed = Figures()
    parsed.feed(page.read_text(encoding="utf-8"))
    with open_engine(db_url) as engine:
        want = summary(engine)
    got = [
        (r["policy_id"], r["benefit_period"], int(r["count"]), int(r["amount_fen"]))
        for r in parsed.rows
    ]
    assert got == [
        (r["policy_id"], r["benefit_period"], r["count"], r["amount_fen"])
        for r in want.rows.iter_rows(named=True)
    ]
    # The same figures as the run counted them when it posted: every policy that entitled
    # anyone has its row, and the totals are the run's (a city of 800 firms and 3,000
    # people: several policies, hundreds of keys, millions of yuan).
    # (A past period's back-pay is its own line, `<policy>@<period>`, naming its policy.)
    entitled = {
        (p["policy_id"], p["benefit_period"], p["entitled"], p["entitled_fen"])
        for p in run["policies"].values()
        if p["entitled"]
    }
    assert set(got) == entitled
    assert len(got) >= 5, "the report shows too few policies"
    assert all(count > 0 and fen > 0 for _, _, count, fen in got)
    total_fen, total_count = run["totals"]["entitled_fen"], run["totals"]["entitled"]
    assert total_count > 300
    assert total_fen > 100_000_000
    assert (parsed.total_fen, parsed.total_count) == (total_fen, total_count)
    assert (parsed.total_fen, parsed.total_count) == (
        want.totals["amount_fen"],
        want.totals["count"],
    )
    # The cards show those totals as text, not only in their attributes.
    assert parsed.shown == {"total-count": f"{total_count:,}", "total-amount": yuan_text(total_fen)}
    assert parsed.external == []  # self-contained: no link, image or script to fetch
    html = page.read_text(encoding="utf-8")
    for section in (
        "What changed tonight",
        "Budget use",
        "by region",
        "Top reasons",
        "Quarantined",
        "Phase timings",
    ):
        assert section in html
    # A first night's changes are its grants: the same amount as the run entitled.
    assert (
        f'<tr data-kind="grant"><td>grants</td><td class="n">{run["totals"]["transfers"]:,}' in html
    )
    assert html.count("<svg") >= 5
    assert "nothing to show" not in html  # every chart has bars
    # The quarantine table holds the rows the run refused (the city has broken rows).
    quarantined = sum(s["quarantined"] for s in run["sources"].values())
    assert quarantined > 0
    assert sum(int(cells[-1].replace(",", "")) for cells in parsed.quarantine[1:]) == quarantined


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_renders_in_headless_chromium(
    report: tuple[str, Path, dict[str, Any]], tmp_path: Path
) -> None:
    browser = chromium()
    if browser is None:
        message = "Chromium is not installed (Debian package chromium; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    _, page, _ = report
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), done.stderr
    from PIL import Image

    with Image.open(shot) as img:
        grey = img.convert("L")
        lo, hi = grey.getextrema()
        histogram = grey.histogram()
    assert hi - lo > 100, "the screenshot is blank"
    # text and bars: a real share of the page is not background
    dark = sum(histogram[:200])
    assert dark > 0.01 * sum(histogram), "almost nothing is drawn"
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None
    assert len(colours) > 20


def test_a_run_that_is_not_a_recorded_nightly_run_is_refused(
    city: Path, db_url: str, tmp_path: Path
) -> None:
    with open_engine(db_url, init=True):
        pass
    out = CliRunner().invoke(
        main, ["report", "--db", db_url, "--run", "7", "--out", str(tmp_path / "r.html")]
    )
    assert out.exit_code == 1
    assert "run 7 is not a nightly run" in out.output
