"""Sizes, durations, ages and rates as a person reads them."""

import pytest

from runner.units import age_text, duration_text, rate_text, size_text


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (1024 * 1024 - 100, "1023.9 KiB"), (1024 * 1024 - 10, "1.0 MiB"),  # never '1024.0 KiB'
    (377_592_218, "360.1 MiB"), (3 * 1024**3, "3.0 GiB"), (5 * 1024**4, "5.0 TiB"), (2048 * 1024**4, "2048.0 TiB"),
])
def test_sizes(value, text):
    assert size_text(value) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0 s"), (0.04, "0.0 s"), (1.43, "1.4 s"), (8, "8 s"), (9.96, "10 s"), (42.4, "42 s"),
    (59.6, "1 min"), (75, "1 min 15 s"), (3600, "1 h"), (7500, "2 h 5 min"), (86399, "23 h 59 min"),
    (86400, "1 d"), (180000, "2 d 2 h"), (35 * 86400, "35 d"),
])
def test_durations(seconds, text):
    assert duration_text(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "never"), (20, "just now"), (3000, "50 min ago"), (7200, "2 h ago"), (47.9 * 3600, "47 h ago"),
    (49 * 3600, "2 d ago"), (30 * 86400, "30 d ago"),
])
def test_ages(seconds, text):
    assert age_text(seconds) == text


@pytest.mark.parametrize(("fraction", "text"), [
    (None, "-"), (1, "100%"), (0.99999, "99.9%"), (0.995, "99.5%"), (0.9667, "96.6%"), (0.5, "50%"), (0, "0%"),
])
def test_rates_are_rounded_down_so_only_a_perfect_one_reads_100(fraction, text):
    assert rate_text(fraction) == text
