from datetime import date

import pytest

from poem_registry.reports.blinding import peer_labels
from poem_registry.reports.periods import parse_period


def test_peer_labels_deterministic_and_edition_specific():
    sites = ["alpha", "beta", "gamma", "delta"]
    a = peer_labels(sites, "2026-Q3__r1")
    assert a == peer_labels(list(reversed(sites)), "2026-Q3__r1")
    assert sorted(a.values()) == ["Peer A", "Peer B", "Peer C", "Peer D"]
    assert any(peer_labels(sites, f"2026-Q{q}__r{q}") != a for q in range(1, 5))


def test_many_peers_get_double_letters():
    labels = peer_labels([f"s{i:02d}" for i in range(30)], "e")
    assert "Peer AA" in labels.values()


@pytest.mark.parametrize(
    ("text", "label", "start", "end"),
    [
        ("2026-Q3", "2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
        ("2026-09", "2026-09", date(2026, 9, 1), date(2026, 9, 30)),
        ("2026-02", "2026-02", date(2026, 2, 1), date(2026, 2, 28)),
        ("2026", "2026", date(2026, 1, 1), date(2026, 12, 31)),
        (None, "2026-Q4", date(2026, 10, 1), date(2026, 12, 31)),
    ],
)
def test_periods(text, label, start, end):
    p = parse_period(text, date(2026, 11, 5))
    assert (p.label, p.start, p.end) == (label, start, end)


def test_bad_period_message():
    with pytest.raises(ValueError, match="2026-Q3"):
        parse_period("Q3 2026", date(2026, 1, 1))
