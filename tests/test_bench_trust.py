"""The trust benchmark's attacks all fail: it runs here whole (two seconds), so it cannot rot."""

from __future__ import annotations

from bench import trust


def test_no_attack_on_the_trust_around_the_gate_succeeds() -> None:
    """Every class is tried, at least five times, and nothing gets through."""
    tallies = trust.run()
    assert set(tallies) == set(trust.CLASSES)
    assert all(t.attempts >= 5 for t in tallies.values())
    assert {name: t.succeeded for name, t in tallies.items()} == {name: [] for name in tallies}
