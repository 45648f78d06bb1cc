"""salt_kvm.network: the state's diff, restart and guard logic, without a libvirt daemon.

The session's memoised listings are filled from golden files, so ``read``,
``plan`` and the test-mode path run exactly as against libvirtd (test mode
and refusals never touch the connection).
"""

import ipaddress
import pathlib

import pytest

from salt_kvm import network
from salt_kvm.conn import Session
from tests.support import fakes

GOLDEN = pathlib.Path(__file__).parent / "golden" / "network"
REAL_HOST_ROUTES = network._host_routes  # pylint: disable=protected-access
REAL_HOST_ROUTES6 = network._host_routes6  # pylint: disable=protected-access


@pytest.fixture(autouse=True)
def no_host_routes(monkeypatch):
    """The host's routing table is not part of these tests (tested in test_host_routes)."""
    monkeypatch.setattr(network, "_host_routes", lambda path=None: [])
    monkeypatch.setattr(network, "_host_routes6", lambda path=None: [])


def test_host_routes6(tmp_path):
    table = tmp_path / "ipv6_route"
    zero = "0" * 32
    table.write_text(
        f"fd000000000000000000000000000000 40 {zero} 00 {zero} "
        "00000100 00000001 00000000 00000001     eth0\n"
        f"{zero} 00 {zero} 00 {zero} 00000400 00000001 00000000 00000003     eth0\n"
        f"20010db8005100000000000000000001 80 {zero} 00 {zero} "
        "00000000 00000001 00000000 80200001 kvt-x\n"
        f"20010db8005100000000000000000000 40 {zero} 00 {zero} "
        "00000100 00000001 00000000 00000001 kvt-x\n"
    )
    assert REAL_HOST_ROUTES6(str(table)) == [
        ("eth0", ipaddress.ip_network("fd00::/64")),
        ("kvt-x", ipaddress.ip_network("2001:db8:51::/64")),
    ]


def test_host_routes(tmp_path):
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "kvt-x\t206433C6\t00000000\t0001\t0\t0\t0\tE0FFFFFF\t0\t0\t0\n"
    )
    assert REAL_HOST_ROUTES(str(table)) == [
        ("eth0", ipaddress.ip_network("192.0.2.0/24")),
        ("kvt-x", ipaddress.ip_network("198.51.100.32/27")),
    ]


def _xml(name):
    return (GOLDEN / name).read_text()


def _session(nets=(), doms=()):
    recs = {}
    for name, xml, active in nets:
        recs[name] = {
            "name": name,
            "active": active,
            "persistent": True,
            "autostart": False,
            "xml": xml,
            "config": xml,
        }
    cache = {network.MEMO_NETWORKS: recs, network.MEMO_DOMAINS: list(doms)}
    return fakes.FakeSession(cache, uri="test:///nowhere")


def _vm(name="kvt-vm-1", active=True):
    from salt_kvm.xml import network as netxml  # pylint: disable=import-outside-toplevel

    return {
        "name": name,
        "active": active,
        "interfaces": netxml.domain_interfaces(_xml("domain.xml")),
    }


LAB = {
    "mode": "nat",
    "address": "198.51.100.1/24",
    "address6": "2001:db8:1::1/64",
    "dhcp": {
        "start": "198.51.100.100",
        "end": "198.51.100.200",
        "hosts": [{"mac": "52:54:00:00:00:01", "ip": "198.51.100.5", "name": "a"}],
    },
    "dhcp6": {
        "start": "2001:db8:1::100",
        "end": "2001:db8:1::200",
        "hosts": [{"ip": "2001:db8:1::7", "name": "c6"}],
    },
    "domain": "lab.test",
    "mtu": 1400,
    "autostart": False,
}


def test_no_drift_when_libvirt_picked_the_bridge():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)])
    ret = network.network_present(session, "kvt-lab", test=True, **LAB)
    assert ret["result"] is True and ret["changes"] == {}, ret


def test_new_network_in_test_mode_lists_every_key():
    session = _session()
    ret = network.network_present(
        session, "kvt-new", test=True, mode="isolated", address="203.0.113.1/25"
    )
    assert ret["result"] is None
    assert ret["changes"]["mode"] == {"old": None, "new": "isolated"}
    assert ret["changes"]["address"] == {"old": None, "new": "203.0.113.1/25"}
    assert ret["changes"]["active"] == {"old": None, "new": True}
    assert '+  <ip address="203.0.113.1" prefix="25"/>' in ret["changes"]["xml"]["diff"]
    assert "would be created" in ret["comment"]


def test_hosts_change_is_live_no_restart():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    spec = dict(
        LAB,
        dhcp=dict(
            LAB["dhcp"],
            hosts=LAB["dhcp"]["hosts"] + [{"mac": "52:54:00:00:00:09", "ip": "198.51.100.9"}],
        ),
    )
    ret = network.network_present(session, "kvt-lab", test=True, **spec)
    assert ret["result"] is None, ret
    assert set(ret["changes"]) == {"dhcp:hosts", "xml"}
    assert ret["changes"]["dhcp:hosts"]["new"][-1] == {
        "ip": "198.51.100.9",
        "mac": "52:54:00:00:00:09",
    }
    assert "restart" not in ret["comment"]


def test_existing_range_changes_live_a_first_one_needs_a_restart():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    spec = dict(LAB, dhcp=dict(LAB["dhcp"], start="198.51.100.110", end="198.51.100.120"))
    ret = network.network_present(session, "kvt-lab", test=True, **spec)
    assert ret["result"] is None and "restart" not in ret["comment"], ret
    assert ret["changes"]["dhcp:start"] == {"old": "198.51.100.100", "new": "198.51.100.110"}

    session = _session([("kvt-iso", _xml("libvirt_isolated.xml"), True)], [])
    ret = network.network_present(
        session,
        "kvt-iso",
        test=True,
        mode="isolated",
        address="203.0.113.1/25",
        dhcp={"start": "203.0.113.10", "end": "203.0.113.20"},
    )
    assert (
        ret["result"] is None
        and "would be restarted to apply dhcp:end, dhcp:start" in ret["comment"]
    ), ret


def test_restart_guard_names_the_attached_vm():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    ret = network.network_present(session, "kvt-lab", test=True, **dict(LAB, domain="other.test"))
    assert ret["result"] is False
    assert (
        "kvt-vm-1" in ret["comment"]
        and "restart: True" in ret["comment"]
        and "domain" in ret["comment"]
    )


def test_restart_allowed_says_so_in_test_mode():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    ret = network.network_present(
        session, "kvt-lab", test=True, restart=True, **dict(LAB, domain="other.test")
    )
    assert ret["result"] is None
    assert ret["changes"]["domain"] == {"old": "lab.test", "new": "other.test"}
    assert "would be restarted to apply domain" in ret["comment"]
    assert "kvt-vm-1" in ret["comment"]


def test_stopped_vm_does_not_block_a_restart():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm(active=False)])
    ret = network.network_present(session, "kvt-lab", test=True, **dict(LAB, mtu=1500))
    assert ret["result"] is None and "would be restarted" in ret["comment"]


def test_inactive_network_change_needs_no_restart():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), False)], [_vm()])
    ret = network.network_present(session, "kvt-lab", test=True, **dict(LAB, domain="other.test"))
    assert ret["result"] is None
    assert ret["changes"]["active"] == {"old": False, "new": True}
    assert "restart" not in ret["comment"]


def test_mode_switch_to_bridge_diff():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), False)])
    ret = network.network_present(
        session, "kvt-lab", test=True, mode="bridge", bridge="kvt-nosuchbr"
    )
    assert ret["result"] is None, ret
    assert ret["changes"]["mode"] == {"old": "nat", "new": "bridge"}
    assert '-  <ip address="198.51.100.1" prefix="24">' in ret["changes"]["xml"]["diff"]
    assert "does not exist yet" in ret["comment"]


def test_mode_bridge_needs_the_host_bridge_outside_test_mode():
    session = _session()
    ret = network.network_present(
        session, "kvt-lan", test=False, mode="bridge", bridge="kvt-nosuchbr"
    )
    assert ret["result"] is False and "host bridge 'kvt-nosuchbr' does not exist" in ret["comment"]


def test_overlap_with_another_libvirt_network():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)])
    ret = network.network_present(
        session, "kvt-other", test=True, mode="isolated", address="198.51.100.129/25"
    )
    assert ret["result"] is False
    assert (
        "198.51.100.128/25 overlaps libvirt network 'kvt-lab' (198.51.100.0/24)" in ret["comment"]
    )


def test_bridge_name_of_another_network():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)])
    ret = network.network_present(session, "kvt-other", test=True, mode="isolated", bridge="virbr7")
    assert ret["result"] is False and "already used by libvirt network 'kvt-lab'" in ret["comment"]


BAD = [
    (
        {"mode": "nated"},
        "kvt-x:mode: 'nated' is not one of nat, route, isolated, open, bridge "
        "(did you mean 'nat'?)",
    ),
    (
        {"bridge": "kvt-0123456789abc"},
        "kvt-x:bridge: 'kvt-0123456789abc' is longer than 15 characters",
    ),
    (
        {"address": "198.51.100.1/24", "dhcp": {"start": "198.51.100.100", "end": "203.0.113.5"}},
        "kvt-x:dhcp:end: 203.0.113.5 is outside the network 198.51.100.0/24",
    ),
    (
        {
            "address": "198.51.100.1/24",
            "dhcp": {"start": "198.51.100.200", "end": "198.51.100.100"},
        },
        "start 198.51.100.200 is after end 198.51.100.100",
    ),
    (
        {"address": "198.51.100.1/24", "dhcp": {"start": "198.51.100.1", "end": "198.51.100.100"}},
        "overlaps the network's own address 198.51.100.1",
    ),
    (
        {"address": "198.51.100.1/24", "dhcp": {"start": "198.51.100.0", "end": "198.51.100.100"}},
        "includes 198.51.100.0, which is not a host address",
    ),
    (
        {"address": "198.51.100.255/24"},
        "kvt-x:address: 198.51.100.255 is the network's broadcast address",
    ),
    ({"dhcp": {"start": "198.51.100.2", "end": "198.51.100.9"}}, "kvt-x:dhcp: needs address"),
    ({"address": "198.51.100.1"}, "is not an address with a prefix length"),
    ({"address": "2001:db8::1/64"}, "is not an IPv4 address"),
    (
        {
            "address": "198.51.100.1/24",
            "dhcp": {
                "hosts": [
                    {"ip": "198.51.100.5", "mac": "52:54:00:00:00:01"},
                    {"ip": "198.51.100.5", "name": "b"},
                ]
            },
        },
        "198.51.100.5 is also given to host 0",
    ),
    (
        {"address": "198.51.100.1/24", "dhcp": {"hosts": [{"ip": "198.51.100.5"}]}},
        "kvt-x:dhcp:hosts:0: needs mac or name",
    ),
    (
        {"address": "198.51.100.1/24", "dhcp": {"hosts": [{"ip": "198.51.100.5", "mac": "nope"}]}},
        "'nope' is not a MAC address",
    ),
    (
        {
            "address6": "2001:db8::1/64",
            "dhcp6": {"hosts": [{"ip": "2001:db8::5", "mac": "52:54:00:00:00:01"}]},
        },
        "cannot be set for an IPv6 host",
    ),
    ({"mode": "bridge"}, "kvt-x:bridge: is required in mode bridge"),
    (
        {"mode": "bridge", "bridge": "br0", "address": "198.51.100.1/24"},
        "kvt-x:address: cannot be set in mode bridge",
    ),
    ({"mode": "bridge", "bridge": "br0", "mtu": 1400}, "kvt-x:mtu: cannot be set in mode bridge"),
    (
        {"mode": "isolated", "dev": "eth0"},
        "kvt-x:dev: can only be set in mode nat or route, not isolated",
    ),
    ({"mtu": 20}, "kvt-x:mtu: 20 is out of range 68-65535"),
    ({"mode": "route", "dhcp": None}, "kvt-x:address: is required in mode route"),
    ({"autostart": "yes"}, "kvt-x:autostart: 'yes' is not true or false"),
]


@pytest.mark.parametrize("kwargs,message", BAD, ids=[m[:40] for _, m in BAD])
@pytest.mark.parametrize("test", [False, True], ids=["apply", "test-mode"])
def test_bad_input_fails_before_touching_libvirt(kwargs, message, test):
    session = Session("test:///nowhere")  # never opened: validation comes first
    ret = network.network_present(session, "kvt-x", test=test, **kwargs)
    assert ret["result"] is False and ret["changes"] == {}
    assert message in ret["comment"], ret["comment"]
    assert session._conn is None  # pylint: disable=protected-access


def test_bad_name():
    ret = network.network_present(Session("test:///nowhere"), "../etc", test=True)
    assert ret["result"] is False and "is not a name" in ret["comment"]


def test_absent_guard_and_force():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    ret = network.network_absent(session, "kvt-lab", test=True)
    assert (
        ret["result"] is False and "kvt-vm-1" in ret["comment"] and "force: True" in ret["comment"]
    )
    ret = network.network_absent(session, "kvt-lab", force=True, test=True)
    assert ret["result"] is None and ret["changes"]["removed"]["old"]["mode"] == "nat"
    assert network.network_absent(_session(), "kvt-lab", test=True)["result"] is True


def test_vm_interfaces_from_domain_xml_and_bridge():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    assert network.vm_interfaces(session, "kvt-lab") == [
        {"vm": "kvt-vm-1", "running": True, "mac": "52:54:00:ab:cd:ef", "tap": "vnet4"}
    ]
    assert network.attached_vms(session, "kvt-lab") == ["kvt-vm-1"]


def test_flat_keys():
    assert network._flat(
        {"dhcp": {"start": "198.51.100.2", "end": "198.51.100.9"}}, declared=True
    ) == {
        "dhcp:start": "198.51.100.2",
        "dhcp:end": "198.51.100.9",
    }
    assert network._flat({"dhcp": {"start": None, "end": None, "hosts": []}}) == {
        "dhcp:start": None,
        "dhcp:end": None,
        "dhcp:hosts": [],
    }


def test_the_plan_carries_what_apply_needs_and_verify_is_pure(monkeypatch):
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), True)], [_vm()])
    spec = network._validated("kvt-lab", dict(LAB, domain="other.test"))
    resource = network.NetworkResource(session, "kvt-lab", spec, restart=True, test=True)
    before = dict(vars(resource))
    current = resource.read()
    planned = resource.plan(current)
    assert planned.existed and planned.notes == ()
    assert isinstance(planned.payload, network.NetworkPlan)
    assert planned.payload.restart_keys == ("domain",) and planned.payload.attached == ("kvt-vm-1",)
    assert planned.payload.record is current["record"]
    assert "<domain name='other.test'" in planned.payload.desired_xml.replace('"', "'")
    # verify neither checks the host again nor looks for VMs: the same answer, minus the xml
    monkeypatch.setattr(network, "_check_host", lambda *a: pytest.fail("verify checked the host"))
    monkeypatch.setattr(network, "attached_vms", lambda *a, **k: pytest.fail("verify asked"))
    remaining = resource.verify(planned, current)
    assert remaining == {k: v for k, v in planned.changes.items() if k != "xml"}
    assert vars(resource) == before, "the resource keeps no state"


def test_a_note_found_while_planning_is_in_the_comment():
    session = _session([("kvt-lab", _xml("libvirt_nat_live.xml"), False)])
    spec = network._validated("kvt-lab", {"mode": "bridge", "bridge": "kvt-nosuchbr"})
    resource = network.NetworkResource(session, "kvt-lab", spec, test=True)
    planned = resource.plan(resource.read())
    assert planned.notes == ("host bridge 'kvt-nosuchbr' does not exist yet",)
    assert resource.summary(planned, True).endswith(
        "(note: host bridge 'kvt-nosuchbr' does not exist yet)"
    )
