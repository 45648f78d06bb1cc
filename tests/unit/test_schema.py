"""The pillar schema: every key known, every value typed, exact error paths."""

import pytest
import yaml

from salt_kvm import schema
from salt_kvm.errors import InvalidInput
from tests.conftest import REPO


def errors_of(pillar):
    with pytest.raises(InvalidInput) as err:
        schema.validate_pillar(pillar)
    return err.value


def test_the_interface_example_and_pillar_example_are_valid():
    example = yaml.safe_load((REPO / "pillar.example").read_text())
    tree = schema.validate_pillar(example["kvm"])
    assert tree["bridges"]["br0"]["ports"] == [{"name": "eno1"}]


def test_empty_pillar_is_valid():
    assert schema.validate_pillar(None) == {}
    assert schema.validate_pillar({}) == {}
    assert schema.validate_pillar({"bridges": None}) == {"bridges": {}}


def test_error_names_the_exact_path():
    exc = errors_of(
        {
            "pools": {
                "default": {
                    "type": "dir",
                    "target": "/x",
                    "volumes": {"ubuntu.qcow2": {"size": "20X"}},
                }
            }
        }
    )
    assert str(exc).startswith("kvm:pools:default:volumes:ubuntu.qcow2:size: '20X' is not a size (")
    assert exc.path == "kvm:pools:default:volumes:ubuntu.qcow2:size"


def test_unknown_key_gets_a_suggestion():
    exc = errors_of({"bridges": {"br0": {"stpp": True}}})
    assert "kvm:bridges:br0:stpp: unknown key 'stpp' (did you mean 'stp'?)" in str(exc)


def test_all_errors_are_reported():
    exc = errors_of({"bridgs": {}, "pools": {"p": {"type": "dirr", "target": "rel"}}})
    paths = [p for p, _ in exc.errors]
    assert "kvm:bridgs" in paths and "kvm:pools:p:type" in paths and "kvm:pools:p:target" in paths


@pytest.mark.parametrize(
    "pillar,path,words",
    [
        (
            {"bridges": {"br-way-too-long-name": {}}},
            "kvm:bridges:br-way-too-long-name",
            "longer than 15",
        ),
        ({"bridges": {"br/0": {}}}, "kvm:bridges:br/0", "interface name"),
        (
            {"bridges": {"br0": {"addresses": ["192.0.2.300/24"]}}},
            "kvm:bridges:br0:addresses:0",
            "CIDR",
        ),
        (
            {"bridges": {"br0": {"addresses": ["192.0.2.3"]}}},
            "kvm:bridges:br0:addresses:0",
            "prefix length",
        ),
        (
            {"bridges": {"br0": {"ports": [{"name": "eno1", "vlans": {"tagged": ["100-5000"]}}]}}},
            "kvm:bridges:br0:ports:0:vlans:tagged:0",
            "1-4094",
        ),
        ({"bridges": {"br0": {"mtu": 10}}}, "kvm:bridges:br0:mtu", "out of range"),
        (
            {
                "bridges": {
                    "br0": {
                        "vlan_filtering": True,
                        "ports": [
                            {"name": "eno1", "vlans": {"tagged": ["10-20"], "untagged": [15]}}
                        ],
                    }
                }
            },
            "kvm:bridges:br0:ports:0:vlans:untagged",
            "VLAN 15 is both tagged and untagged",
        ),
        ({"bridges": {"br0": {"stp": "yes"}}}, "kvm:bridges:br0:stp", "true or false"),
        (
            {"bridges": {"br0": {"ports": ["eno1"]}, "br1": {"ports": ["eno1"]}}},
            "kvm:bridges:br1:ports:0",
            "already a port of bridge 'br0'",
        ),
        (
            {"bridges": {"br0": {"ports": ["eno1", "eno1"]}}},
            "kvm:bridges:br0:ports:1",
            "listed twice",
        ),
        ({"bridges": {"br0": {"persist": "netplan"}}}, "kvm:bridges:br0:persist", "is not one of"),
        ({"networks": {"n": {"mode": "natt"}}}, "kvm:networks:n:mode", "did you mean 'nat'"),
        (
            {
                "networks": {
                    "n": {
                        "address": "198.51.100.1/24",
                        "dhcp": {"start": "198.51.100.10", "end": "203.0.113.5"},
                    }
                }
            },
            "kvm:networks:n:dhcp:end",
            "outside the network",
        ),
        (
            {
                "networks": {
                    "n": {
                        "address": "198.51.100.1/24",
                        "dhcp": {"start": "198.51.100.50", "end": "198.51.100.10"},
                    }
                }
            },
            "kvm:networks:n:dhcp",
            "after end",
        ),
        (
            {
                "networks": {
                    "a": {"address": "198.51.100.1/24"},
                    "b": {"address": "198.51.100.129/25"},
                }
            },
            "kvm:networks:b:address",
            "overlaps network 'a'",
        ),
        (
            {"networks": {"n": {"mode": "bridge"}}},
            "kvm:networks:n:bridge",
            "is required in mode bridge",
        ),
        ({"pools": {"p": {"type": "dir"}}}, "kvm:pools:p:target", "required for a dir pool"),
        (
            {"pools": {"p": {"type": "logical", "source": {"devices": ["/dev/sdb"]}}}},
            "kvm:pools:p:source:name",
            "required",
        ),
        (
            {
                "pools": {
                    "p": {
                        "type": "dir",
                        "target": "/x",
                        "volumes": {"../etc/passwd": {"size": "1G"}},
                    }
                }
            },
            "kvm:pools:p:volumes:../etc/passwd",
            "volume name",
        ),
        (
            {
                "pools": {
                    "p": {
                        "type": "dir",
                        "target": "/x",
                        "volumes": {"a": {"size": "1G", "format": "raw", "backing": "b"}},
                    }
                }
            },
            "kvm:pools:p:volumes:a:backing",
            "raw volume",
        ),
        (
            {
                "pools": {
                    "p": {
                        "type": "dir",
                        "target": "/x",
                        "volumes": {"a": {"backing": "b"}, "b": {"backing": "a"}},
                    }
                }
            },
            "kvm:pools:p:volumes:a:backing",
            "loops",
        ),
        (
            {"pools": {"p": {"type": "dir", "target": "/x/../etc"}}},
            "kvm:pools:p:target",
            "absolute path",
        ),
        (
            {
                "pools": {
                    "p": {"type": "dir", "target": "/x", "volumes": {"a": {"source": "ftp://x/y"}}}
                }
            },
            "kvm:pools:p:volumes:a:source",
            "http(s) URL",
        ),
        (
            {"snapshots": {"web01": {"every": "1y", "keep": 7}}},
            "kvm:snapshots:web01:every",
            "is not a duration",
        ),
        ({"snapshots": {"web01": {"every": "1d"}}}, "kvm:snapshots:web01:keep", "is required"),
        (
            {"snapshots": {"web01": {"every": "1d", "keep": 0}}},
            "kvm:snapshots:web01:keep",
            "out of range",
        ),
        ({"pools": "nope"}, "kvm:pools", "not a mapping"),
    ],
)
def test_bad_values_are_rejected_with_their_path(pillar, path, words):
    exc = errors_of(pillar)
    messages = {p: m for p, m in exc.errors}
    assert path in messages, exc.errors
    assert words in messages[path], messages[path]


def test_normalised_values():
    tree = schema.validate_pillar(
        {
            "bridges": {
                "br0": {
                    "ports": {"eno1": {"cost": 4}, "eno2": None},
                    "mac": "AA-BB-CC-DD-EE-FF",
                    "addresses": ["2001:DB8::1/64"],
                }
            },
            "pools": {"p": {"type": "dir", "target": "/x", "volumes": {"v": {"size": "1G"}}}},
            "snapshots": {"vm": {"every": "1d", "keep": 3}},
        }
    )
    assert tree["bridges"]["br0"]["ports"] == [{"name": "eno1", "cost": 4}, {"name": "eno2"}]
    assert tree["bridges"]["br0"]["mac"] == "aa:bb:cc:dd:ee:ff"
    assert tree["bridges"]["br0"]["addresses"] == ["2001:db8::1/64"]
    assert tree["pools"]["p"]["volumes"]["v"]["size"] == 1024**3
    assert tree["snapshots"]["vm"]["every"] == 86400


def test_normalised_tree_validates_again_to_itself():
    example = yaml.safe_load((REPO / "pillar.example").read_text())["kvm"]
    once = schema.validate_pillar(example)
    assert schema.validate_pillar(once) == once


def test_vlan_ranges_expand():
    assert schema.validate(schema.VlanList(), [10, "100-102"], "x") == [10, 100, 101, 102]
