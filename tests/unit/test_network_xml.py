"""salt_kvm.xml.network: one class parses libvirt's XML and builds the declared one.

Golden files live in tests/unit/golden/network/: ``libvirt_*.xml`` are what
libvirt 9.0 reports, ``build_*.xml`` / ``switch_*.xml`` / ``edit_*.xml`` what
we build. ``KVT_REGEN_GOLDEN=1`` rewrites the built ones (review the diff!).
"""

import os
import pathlib

import pytest
from lxml import etree

from salt_kvm.xml import network as netxml
from salt_kvm.xml.base import parse

GOLDEN = pathlib.Path(__file__).parent / "golden" / "network"
REGEN = bool(os.environ.get("KVT_REGEN_GOLDEN"))

HOSTS = [
    {"mac": "52:54:00:00:00:0b", "ip": "198.51.100.11", "name": "web"},
    {"mac": "52:54:00:00:00:0a", "ip": "198.51.100.10"},
]

BUILD_CASES = {
    "build_nat": (
        None,
        {
            "mode": "nat",
            "bridge": "kvt-labbr",
            "address": "198.51.100.1/24",
            "dhcp": {"start": "198.51.100.100", "end": "198.51.100.200", "hosts": HOSTS},
            "domain": "lab.test",
            "mtu": 1400,
        },
    ),
    "build_isolated": (None, {"mode": "isolated", "address": "203.0.113.1/25"}),
    "build_route": (None, {"mode": "route", "dev": "eth9", "address": "203.0.113.129/25"}),
    "build_open": (None, {"mode": "open", "address": "192.0.2.1/24"}),
    "build_bridge": (None, {"mode": "bridge", "bridge": "kvt-br0"}),
    "build_dual_stack": (
        None,
        {
            "mode": "nat",
            "address": "198.51.100.1/24",
            "address6": "2001:db8:1::1/64",
            "dhcp6": {
                "start": "2001:db8:1::100",
                "end": "2001:db8:1::1ff",
                "hosts": [{"ip": "2001:db8:1::7", "name": "c6"}],
            },
        },
    ),
    "switch_nat_to_bridge": ("libvirt_nat_live.xml", {"mode": "bridge", "bridge": "kvt-br0"}),
    "switch_bridge_to_nat": ("libvirt_bridge.xml", {"mode": "nat", "address": "198.51.100.1/24"}),
    "switch_nat_to_isolated": ("libvirt_netmask.xml", {"mode": "isolated"}),
    "switch_nat_to_route": ("libvirt_nat_live.xml", {"mode": "route", "dev": "eth9"}),
    "edit_hosts_keeps_netmask": (
        "libvirt_netmask.xml",
        {
            "mode": "nat",
            "address": "192.0.2.1/24",
            "dhcp": {"hosts": [{"mac": "52:54:00:00:00:0c", "ip": "192.0.2.12"}]},
        },
    ),
    "edit_new_range": (
        "libvirt_netmask.xml",
        {"mode": "nat", "dhcp": {"start": "192.0.2.100", "end": "192.0.2.150"}},
    ),
}


def _canon(xml):
    return etree.tostring(parse(xml), encoding="unicode", pretty_print=True)


@pytest.mark.parametrize("case", sorted(BUILD_CASES))
def test_build_matches_golden(case):
    base, spec = BUILD_CASES[case]
    base_xml = (GOLDEN / base).read_text() if base else None
    built = netxml.Network.build("kvt-lab", spec, base=base_xml).to_xml()
    path = GOLDEN / f"{case}.xml"
    if REGEN or not path.exists():
        path.write_text(built)
    assert _canon(built) == _canon(path.read_text())


@pytest.mark.parametrize("case", sorted(BUILD_CASES))
def test_built_xml_reads_back_as_declared(case):
    """What we build parses back to the declared keys (the round trip the state relies on)."""
    base, spec = BUILD_CASES[case]
    base_xml = (GOLDEN / base).read_text() if base else None
    got = netxml.Network(netxml.Network.build("kvt-lab", spec, base=base_xml).to_xml()).spec()
    for key, want in spec.items():
        if key in ("dhcp", "dhcp6"):
            for sub in ("start", "end"):
                if sub in want:
                    assert got[key][sub] == want[sub]
            if "hosts" in want:
                assert got[key]["hosts"] == netxml.norm_hosts(want["hosts"])
        else:
            assert got[key] == want, key


def test_parse_libvirt_nat():
    spec = netxml.Network((GOLDEN / "libvirt_nat_live.xml").read_text()).spec()
    assert spec == {
        "mode": "nat",
        "bridge": "virbr7",
        "address": "198.51.100.1/24",
        "dhcp": {
            "start": "198.51.100.100",
            "end": "198.51.100.200",
            "hosts": [{"ip": "198.51.100.5", "mac": "52:54:00:00:00:01", "name": "a"}],
        },
        "address6": "2001:db8:1::1/64",
        "dhcp6": {
            "start": "2001:db8:1::100",
            "end": "2001:db8:1::200",
            "hosts": [{"ip": "2001:db8:1::7", "name": "c6"}],
        },
        "domain": "lab.test",
        "mtu": 1400,
    }


def test_parse_netmask_isolated_and_bridge():
    assert (
        netxml.Network((GOLDEN / "libvirt_netmask.xml").read_text()).spec()["address"]
        == "192.0.2.1/24"
    )
    iso = netxml.Network((GOLDEN / "libvirt_isolated.xml").read_text()).spec()
    assert iso == {"mode": "isolated", "bridge": "kvt-isobr", "address": "203.0.113.1/25"}
    assert netxml.Network((GOLDEN / "libvirt_bridge.xml").read_text()).spec() == {
        "mode": "bridge",
        "bridge": "kvt-br0",
    }


def test_unchanged_spec_leaves_libvirt_xml_alone():
    """Declaring what is there changes nothing in the XML (netmask stays netmask, UUID and MAC
    stay)."""
    for name in ("libvirt_netmask.xml", "libvirt_isolated.xml", "libvirt_bridge.xml"):
        xml = (GOLDEN / name).read_text()
        spec = netxml.Network(xml).spec()
        assert _canon(netxml.Network.build("x", spec, base=xml).to_xml()) == _canon(xml)


def test_switch_to_bridge_is_valid_for_libvirt():
    """salt#60667: NAT -> bridge must drop ip, mac, domain, mtu and STP settings."""
    net = netxml.Network(
        netxml.Network.build(
            "kvt-lab",
            {"mode": "bridge", "bridge": "kvt-br0"},
            base=(GOLDEN / "libvirt_nat_live.xml").read_text(),
        ).to_xml()
    )
    for path in ("ip", "mac", "domain", "mtu", "forward/nat"):
        assert net.find(path) is None, path
    assert dict(net.find("bridge").attrib) == {"name": "kvt-br0"}
    assert net.uuid == "4ab3449f-aa5c-4331-ac4e-0766249bbd60"


def test_switch_from_bridge_forgets_host_bridge():
    net = netxml.Network.build(
        "kvt-lan", {"mode": "nat"}, base=(GOLDEN / "libvirt_bridge.xml").read_text()
    )
    assert net.bridge is None  # libvirt picks its own bridge; the host bridge is not taken over


def test_ip_index_and_hosts():
    net = netxml.Network((GOLDEN / "libvirt_nat_live.xml").read_text())
    assert net.ip_index(4) == 0 and net.ip_index(6) == 1
    assert (
        netxml.host_xml({"ip": "198.51.100.9", "mac": "52:54:00:AA:00:01", "name": "h"})
        == '<host mac="52:54:00:aa:00:01" name="h" ip="198.51.100.9"/>'
    )


def test_domain_interfaces():
    got = netxml.domain_interfaces((GOLDEN / "domain.xml").read_text())
    assert got == [
        {
            "type": "network",
            "network": "kvt-lab",
            "bridge": "virbr7",
            "dev": None,
            "tap": "vnet4",
            "mac": "52:54:00:ab:cd:ef",
        },
        {
            "type": "bridge",
            "network": None,
            "bridge": "kvt-br0",
            "dev": None,
            "tap": "vnet5",
            "mac": "52:54:00:00:00:02",
        },
    ]
