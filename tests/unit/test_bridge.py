"""Bridge logic without a kernel: unit normalisation, VLAN sets, the read view,
and what a state would change (uplink migration included) for a given dump."""

import socket

import pytest

from salt_kvm import bridge
from salt_kvm import bridge_netlink as nl
from salt_kvm.errors import InvalidInput


def test_seconds_and_timer_rounding():
    assert nl.seconds(1500) == 15 and isinstance(nl.seconds(1500), int)
    assert nl.seconds(150) == 1.5
    assert nl.centiseconds(123.45) == 12345
    # the kernel keeps jiffies: 123.45 s reads back as 123.44 s
    assert nl.same_timer(123.44, 123.45)
    assert nl.same_timer(0, 0.0)
    assert not nl.same_timer(4, 5)
    assert not nl.same_timer(None, 2)


def test_mac_case():
    assert nl.mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"


def test_vlans_access_and_trunk():
    access, entries = nl.vlans_desired({"pvid": 10})
    assert access == {"pvid": 10, "untagged": [10], "tagged": []}
    assert entries == {10: nl.BRIDGE_VLAN_INFO_PVID | nl.BRIDGE_VLAN_INFO_UNTAGGED}
    trunk, entries = nl.vlans_desired({"tagged": [100, 101, 200], "pvid": 1, "untagged": [1]})
    assert trunk == {"pvid": 1, "untagged": [1], "tagged": [100, 101, 200]}
    assert entries[100] == 0
    # read back from kernel entries gives the same form, whatever the order
    kernel = [
        (200, 0),
        (1, nl.BRIDGE_VLAN_INFO_PVID | nl.BRIDGE_VLAN_INFO_UNTAGGED),
        (100, 0),
        (101, 0),
    ]
    assert nl.vlans_from_entries(kernel) == trunk


def _link(
    name,
    index,
    kind=None,
    master=None,
    mac="02:00:00:00:00:01",
    bridge_attrs=None,
    port=None,
    up=True,
):
    return {
        "name": name,
        "index": index,
        "kind": kind,
        "mac": mac,
        "mtu": 1500,
        "up": up,
        "master": master,
        "parent": None,
        "vlan_id": None,
        "bridge": bridge_attrs,
        "port": port,
        "vlans": None,
    }


BR_ATTRS = {
    "stp": False,
    "forward_delay": 0,
    "hello_time": 2,
    "max_age": 20,
    "ageing_time": 300,
    "priority": 32768,
    "vlan_filtering": False,
    "default_pvid": None,
    "mcast_snooping": True,
    "id": "8000.020000000001",
}
PORT = {"cost": 2, "priority": 32, "hairpin": False, "state": "forwarding"}


def _host(with_bridge=False):
    links = {
        "lo": _link("lo", 1, mac="00:00:00:00:00:00"),
        "eno1": _link("eno1", 2, "veth", mac="02:00:00:00:00:aa"),
        "eno2": _link("eno2", 3, "veth", mac="02:00:00:00:00:bb"),
    }
    addresses = [
        {
            "ifname": "eno1",
            "family": socket.AF_INET,
            "address": "192.0.2.10",
            "prefixlen": 24,
            "cidr": "192.0.2.10/24",
            "scope": 0,
            "broadcast": "192.0.2.255",
        },
        {
            "ifname": "eno1",
            "family": socket.AF_INET6,
            "address": "fe80::1",
            "prefixlen": 64,
            "cidr": "fe80::1/64",
            "scope": 253,
            "broadcast": None,
        },
    ]
    routes = [
        {
            "family": socket.AF_INET,
            "dst": "192.0.2.0/24",
            "via": None,
            "oif": "eno1",
            "metric": None,
            "proto": 2,
            "scope": 253,
            "prefsrc": "192.0.2.10",
        },
        {
            "family": socket.AF_INET,
            "dst": "default",
            "via": "192.0.2.1",
            "oif": "eno1",
            "metric": None,
            "proto": 3,
            "scope": 0,
            "prefsrc": None,
        },
    ]
    if with_bridge:
        links["br0"] = _link(
            "br0",
            4,
            "bridge",
            mac="02:00:00:00:00:aa",
            bridge_attrs=dict(BR_ATTRS, forward_delay=4.99),
        )
        links["eno1"]["master"] = "br0"
        links["eno1"]["port"] = dict(PORT)
        for item in addresses + routes:
            if item.get("ifname") == "eno1" and item["scope"] == 0:
                item["ifname"] = "br0"
            if item.get("oif") == "eno1":
                item["oif"] = "br0"
    return {"links": links, "addresses": addresses, "routes": routes}


def _snapshot(host, name="br0"):
    return bridge.BridgeSnapshot(host, nl.bridge_view(host, name))


def _plan(host, **spec):
    res = bridge.BridgeResource(None, "br0", spec)
    return res, res.plan(_snapshot(host))


def _changes(host, **spec):
    res, planned = _plan(host, **spec)
    return res, dict(planned.changes)


def test_view_is_sorted_and_normalised():
    host = _host(with_bridge=True)
    host["links"]["eno0"] = _link("eno0", 9, "veth", master="br0", port=dict(PORT))
    view = nl.bridge_view(host, "br0")
    assert [p["name"] for p in view["ports"]] == ["eno0", "eno1"]
    assert view["addresses"] == ["192.0.2.10/24"]
    assert view["gateway"] == "192.0.2.1" and view["routes"] == []
    assert nl.bridge_view(host, "eno1") is None


def test_migration_is_predicted():
    res, planned = _plan(_host(), ports=["eno1"], stp=False)
    changes = planned.changes
    assert changes["uplink"] == {
        "old": {"eno1": ["192.0.2.10/24", "default via 192.0.2.1"]},
        "new": {"br0": ["192.0.2.10/24", "default via 192.0.2.1"]},
    }
    assert changes["addresses"] == {"old": [], "new": ["192.0.2.10/24"]}
    assert changes["gateway"] == {"old": None, "new": "192.0.2.1"}
    assert changes["mac"]["new"] == "02:00:00:00:00:aa"
    assert not planned.existed and set(planned.payload.uplinks) == {"eno1"}
    probe = res._probe(planned.payload, changes)  # pylint: disable=protected-access
    assert probe == {"ping": "192.0.2.1"}


def test_plan_is_a_value_and_the_resource_keeps_no_state():
    host = _host()
    res = bridge.BridgeResource(None, "br0", {"ports": ["eno1"], "stp": False})
    before = dict(vars(res))
    first, second = res.plan(_snapshot(host)), res.plan(_snapshot(host))
    assert vars(res) == before
    assert dict(first.changes) == dict(second.changes) and first.payload == second.payload
    assert first.payload.host is host and first.payload.mac == "02:00:00:00:00:aa"
    with pytest.raises(AttributeError):
        first.payload.mac = "02:00:00:00:00:bb"  # frozen
    with pytest.raises(TypeError):
        first.changes["stp"] = {}  # read-only
    # verify: the migration itself is not a difference left after apply
    remaining = res.verify(first, _snapshot(host))
    assert "uplink" not in remaining and "bridge" in remaining


def test_applied_state_is_a_no_op_with_kernel_rounding():
    # forward_delay reads back as 4.99 for a declared 5: no change
    _res, changes = _changes(
        _host(with_bridge=True), ports=["eno1"], stp=False, forward_delay=5, mac="02:00:00:00:00:AA"
    )
    assert changes == {}


def test_only_declared_port_attributes_compare():
    _res, changes = _changes(_host(with_bridge=True), ports=[{"name": "eno1", "cost": 7}])
    assert changes == {
        "ports": {"old": [{"name": "eno1", "cost": 2}], "new": [{"name": "eno1", "cost": 7}]}
    }


def test_bad_input():
    with pytest.raises(InvalidInput, match="br0:ports:0: 'eno9' does not exist"):
        _changes(_host(), ports=["eno9"])
    host = _host(with_bridge=True)
    host["links"]["br1"] = _link("br1", 5, "bridge", bridge_attrs=dict(BR_ATTRS))
    res = bridge.BridgeResource(None, "br1", {"ports": ["eno1"]})
    with pytest.raises(InvalidInput, match="already a port of bridge 'br0'"):
        res.plan(_snapshot(host, "br1"))
    with pytest.raises(InvalidInput, match="longer than 15"):
        bridge.BridgeResource(None, "br-with-a-long-name", {})
    with pytest.raises(InvalidInput, match="VLAN 5000 of 'eno1.5000' is out of range"):
        _changes(_host(), ports=["eno1.5000"])


def test_present_reports_bad_input_as_a_failed_state():
    ret = bridge.bridge_present(None, "br0", addresses=["192.0.2.1"])
    assert ret["result"] is False and "is not an address with a prefix length" in ret["comment"]


# --- routes: default and families ---------------------------------------------------


def test_route_family_and_prefix_of_default():
    assert nl.route_family("default") == socket.AF_INET
    assert nl.route_family("default", "192.0.2.1") == socket.AF_INET
    assert nl.route_family("default", "2001:db8::1") == socket.AF_INET6
    assert nl.route_family("2001:db8::/48") == socket.AF_INET6
    assert nl.route_prefix("default", "192.0.2.1") == "0.0.0.0/0"
    assert nl.route_prefix("default", "2001:db8::1") == "::/0"
    assert nl.route_prefix("198.51.100.0/24") == "198.51.100.0/24"


def test_route_key_matches_the_kernels_form():
    key = bridge._route_key  # pylint: disable=protected-access
    assert key({"to": "default", "via": "192.0.2.1"}) == key(
        {"to": "0.0.0.0/0", "via": "192.0.2.1", "metric": 0}
    )
    assert key({"to": "2001:db8:2::/64", "via": "2001:db8::1"}) == key(
        {"to": "2001:db8:2::/64", "via": "2001:db8::1", "metric": 1024}
    )
    assert key({"to": "default", "via": "2001:db8::1"}) == key(
        {"to": "::/0", "via": "2001:db8::1", "metric": 1024}
    )
    assert key({"to": "default", "via": "192.0.2.1"}) != key(
        {"to": "default", "via": "192.0.2.1", "metric": 500}
    )
    sorted(
        map(
            key,
            [
                {"to": "default"},
                {"to": "default", "metric": 5},
                {"to": "::/0", "via": "2001:db8::1"},
            ],
        )
    )  # sortable


def test_a_declared_default_route_beside_the_gateway_compares():
    host = _host(with_bridge=True)
    host["routes"].append(
        {
            "family": socket.AF_INET,
            "dst": "default",
            "via": "192.0.2.2",
            "oif": "br0",
            "metric": 500,
            "proto": 3,
            "scope": 0,
            "prefsrc": None,
        }
    )
    declared = [{"to": "default", "via": "192.0.2.2", "metric": 500}]
    _res, changes = _changes(host, ports=["eno1"], gateway="192.0.2.1", routes=declared)
    assert changes == {}
    _res, changes = _changes(
        host,
        ports=["eno1"],
        gateway="192.0.2.1",
        routes=[{"to": "0.0.0.0/0", "via": "192.0.2.2", "metric": 600}],
    )
    assert set(changes) == {"routes"}
    assert changes["routes"]["old"] == [{"to": "0.0.0.0/0", "via": "192.0.2.2", "metric": 500}]
    # the gateway's own route is the gateway, not one of the routes
    _res, changes = _changes(host, ports=["eno1"], gateway="192.0.2.1", routes=[])
    assert set(changes) == {"routes"} and changes["routes"]["new"] == []


# --- the lock ----------------------------------------------------------------------------


def test_lock_times_out_naming_the_holder(tmp_path, monkeypatch):
    import fcntl  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(bridge, "LOCK_DIR", str(tmp_path / "run"))
    path = bridge.lock_path("kvt-ns")
    assert path == str(tmp_path / "run" / "bridge-kvt-ns.lock")
    assert bridge.lock_path(None).endswith("/bridge-host.lock")
    with bridge.change_lock(None, "kvt-ns"):
        pass  # creates the directory and the file
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"4242 7".ljust(63) + b"\n", 0)
        with pytest.raises(
            bridge.KvmError, match=r"another salt-kvm bridge change is running \(pid 4242\)"
        ):
            with bridge.change_lock(None, "kvt-ns", timeout=0.2):
                pytest.fail("the lock was taken twice")
    finally:
        os.close(fd)
    with bridge.change_lock(None, "kvt-ns", timeout=0.2):
        assert open(path, encoding="ascii").read().split()[0] == str(os.getpid())


def test_lock_generation_drops_a_dump_older_than_another_change(tmp_path, monkeypatch):
    from salt_kvm import conn  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(bridge, "LOCK_DIR", str(tmp_path))
    ours, other = conn.Session(), conn.Session()
    key = bridge._memo_key("kvt-ns")  # pylint: disable=protected-access
    with bridge.change_lock(ours, "kvt-ns") as lock:
        ours.cache[key] = {"links": {}}
        lock.changed = False
    with bridge.change_lock(ours, "kvt-ns") as lock:
        assert key in ours.cache, "nothing changed: the dump is kept"
        lock.changed = True  # our own change: our (patched) dump stays valid
    with bridge.change_lock(ours, "kvt-ns"):
        assert key in ours.cache
    with bridge.change_lock(other, "kvt-ns"):
        pass  # another process changed something
    with bridge.change_lock(ours, "kvt-ns"):
        assert key not in ours.cache, "a dump older than another process's change was kept"
    ours.cache[bridge._memo_key("kvt-other")] = {"links": {}}  # pylint: disable=protected-access
    bridge._invalidate(ours, None)  # pylint: disable=protected-access
    assert bridge._memo_key("kvt-other") in ours.cache, (
        "invalidating the host's dump dropped another namespace's"
    )  # pylint: disable=protected-access


# --- apply records what restore needs in the undo log --------------------------------------


class _FakeNetlink:
    """Records the netlink calls a port's attributes and VLANs make."""

    def __init__(self):
        self.calls = []

    def link(self, *args, **kwargs):
        self.calls.append(("link", args, kwargs))

    def brport(self, *args, **kwargs):
        self.calls.append(("brport", args, kwargs))

    def vlan_filter(self, *args, **kwargs):
        self.calls.append(("vlan_filter", args, kwargs))


def test_apply_records_the_port_vlans_it_replaces(monkeypatch):
    from salt_kvm import plan  # pylint: disable=import-outside-toplevel

    res = bridge.BridgeResource(
        None,
        "br0",
        {"vlan_filtering": True, "ports": [{"name": "eno1", "vlans": {"pvid": 10}}]},
    )
    old = {1: nl.BRIDGE_VLAN_INFO_PVID | nl.BRIDGE_VLAN_INFO_UNTAGGED}
    monkeypatch.setattr(nl, "_vlan_entries", lambda _ipr: {2: list(old.items())})
    ipr, undo = _FakeNetlink(), plan.Undo()
    before = dict(vars(res))
    res._apply_ports(ipr, lambda _name: 2, undo)  # pylint: disable=protected-access
    assert vars(res) == before, "apply kept state on the resource"
    assert undo.get("vlans_before") == {"eno1": old}
    vlan_calls = [
        (args[0], kw["vlan_info"]["vid"]) for f, args, kw in ipr.calls if f == "vlan_filter"
    ]
    assert vlan_calls == [("del", 1), ("add", 10)]
