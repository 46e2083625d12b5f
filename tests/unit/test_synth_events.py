"""The synthetic day of events the bench serves: the same seed gives the same events,
each a row of a catalogue source, in the shares the module names."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from disburse.synth.events import SHARES, day_of_events
from jobs.catalogue import load_source_catalogue
from tests.unit.test_event_decisions import AS_OF


def test_a_day_of_events_is_the_same_for_a_seed_and_made_of_catalogue_rows(
    clean_city: Path,
) -> None:
    events = day_of_events(clean_city, AS_OF, 2_000, seed=4)
    assert len(events) == 2_000
    assert events == day_of_events(clean_city, AS_OF, 2_000, seed=4)
    assert events != day_of_events(clean_city, AS_OF, 2_000, seed=5)
    catalogue = load_source_catalogue()
    for source, op, row in events:
        assert op in ("upsert", "remove")
        assert set(json.loads(row)) <= set(catalogue.sources[source].columns)
    by_source = Counter(source for source, _op, _row in events)
    month_corrections = {name: share for share, name in SHARES}["social_security_monthly"]
    assert abs(by_source["social_security_monthly"] / 2_000 - month_corrections) < 0.05
    # a birth and its parent (the last may be cut off at the count)
    assert 0 <= by_source["persons"] - by_source["relations"] <= 1
