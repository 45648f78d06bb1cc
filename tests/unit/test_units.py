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


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("90s", 90),
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        (45, 45),
        ("10", 10),
    ],
)
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


@pytest.mark.parametrize(
    "text,expected",
    [
        # binary, as virsh: K/M/G/T and KiB/MiB/GiB/TiB
        ("1K", 1024),
        ("1KiB", 1024),
        ("1M", 1024**2),
        ("1MiB", 1024**2),
        ("1G", 1024**3),
        ("1gib", 1024**3),
        ("1T", 1024**4),
        ("1TiB", 1024**4),
        # decimal, as virsh: KB/MB/GB/TB
        ("1KB", 1000),
        ("1MB", 1000**2),
        ("1GB", 1000**3),
        ("1gb", 1000**3),
        ("2TB", 2 * 1000**4),
        ("1.5GB", 1500 * 1000**2),
        # bytes
        ("100B", 100),
        ("100b", 100),
        ("100", 100),
    ],
)
def test_units_read_as_virsh_reads_them(text, expected):
    assert units.parse_size(text) == expected


def test_a_bad_unit_says_which_units_exist():
    with pytest.raises(ValueError) as err:
        units.parse_size("20X")
    text = str(err.value)
    assert text.startswith("'20X' is not a size")
    assert (
        "K, M, G, T (or KiB, MiB, GiB, TiB) are powers of 1024" in text
        and "KB, MB, GB, TB powers of 1000" in text
    )


@pytest.mark.parametrize(
    "num,text",
    [
        (536870912, "512 MiB"),
        (2 * 1024**3, "2 GiB"),
        (1536 * 1024**2, "1.5 GiB"),
        (1024, "1 KiB"),
        (1000, "1000 bytes"),
        (0, "0 bytes"),
        (1, "1 byte"),
        (3 * 1024**4, "3 TiB"),
    ],
)
def test_human_size(num, text):
    assert units.human_size(num) == text
