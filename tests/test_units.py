import pytest

from bench.spec.units import (
    format_bytes,
    format_count,
    format_duration,
    parse_bytes,
    parse_count,
    parse_duration,
)


@pytest.mark.parametrize(
    "text, expected",
    [("40M", 40_000_000), ("1.5B", 1_500_000_000), ("250k", 250_000), ("40_000_000", 40_000_000),
     ("3e17", 3 * 10**17), (1000, 1000), ("2G", 2 * 10**9), ("1T", 10**12), (" 7M ", 7_000_000)],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("10GB", 10 * 10**9), ("500MB", 500 * 10**6), ("1GiB", 2**30), ("512KB", 512_000), ("20B", 20),
     (4096, 4096), ("1.5TB", 1_500 * 10**9), ("248633", 248_633)],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("45m", 2700.0), ("90s", 90.0), ("2h", 7200.0), ("1h30m", 5400.0), ("1.5h", 5400.0), (12, 12.0), ("2h30m", 9000.0)],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("parse, bad", [
    (parse_count, "40X"), (parse_count, "-5M"), (parse_count, "M"), (parse_count, True), (parse_count, [1]),
    (parse_bytes, "10gb"), (parse_bytes, "10 parsecs"), (parse_bytes, -1), (parse_bytes, "nanGB"),
    (parse_duration, "45x"), (parse_duration, "m"), (parse_duration, "1h1h"), (parse_duration, -3),
    (parse_duration, "45 minutes"),
])
def test_bad_units_say_what_was_given(parse, bad):
    with pytest.raises(ValueError) as info:
        parse(bad)
    assert repr(bad) in str(info.value)


def test_formats_round_trip_for_display():
    assert format_count(40_000_000) == "40M"
    assert format_bytes(10 * 10**9) == "10GB"
    assert format_duration(5400) == "1h30m"
    assert format_duration(45) == "45.0s"
    assert parse_count(format_count(160_000_000)) == 160_000_000
