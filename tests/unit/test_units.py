import pytest

from salt_kvm import units


@pytest.mark.parametrize(
    "text,expected",
    [
        ("512M", 512 * 1024**2),
        ("20G", 20 * 1024**3),
        ("1.5T", int(1.5 * 1024**4)),
        ("10737418240", 10737418240),
        (10737418240, 10737418240),
        ("1GiB", 1024**3),
        ("4k", 4096),
        (" 2 G ", 2 * 1024**3),
    ],
)
def test_parse_size(text, expected):
    assert units.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["20X", "", "G", "-1G", True, None, [], "1e3G", -5, "9" * 30])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError) as err:
        units.parse_size(bad)
    assert "is not a size" in str(err.value)


def test_format_size_round_trips():
    for text in ("512M", "20G", "3T", "1K"):
        assert units.format_size(units.parse_size(text)) == text
    assert units.format_size(1536 * 1024**2) == "1.5G"


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), (45, 45), ("10", 10)])
def test_parse_duration(text, seconds):
    assert units.parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1y", "", "d", "-3d", None, False, "7 days"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        units.parse_duration(bad)


def test_format_duration():
    assert units.format_duration(86400) == "1d"
    assert units.format_duration(90) == "90s"
    assert units.format_duration(3600) == "1h"
