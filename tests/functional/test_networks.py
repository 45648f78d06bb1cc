"""libvirt networks for real: ``kvm.network_*`` and the ``kvm.network_present`` /
``kvm.network_absent`` states against the real libvirtd.

Every network and bridge is called ``kvt-...`` (bridge names <= 15 characters)
and removed afterwards. A started network puts its subnet on a bridge in the
root namespace, so each test takes a /27 of 198.51.100.0/24 (sandbox.ROOT_NS_RANGE)
that no route and no libvirt network on this host overlaps (never 192.0.2.0/24:
it may be the machine's own LAN), and IPv6 from 2001:db8::/32.
"""

import contextlib
import ipaddress
import os
import pathlib
import subprocess

import pytest
from lxml import etree
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import sandbox

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "unit" / "golden" / "network"


# --- helpers -------------------------------------------------------------------


def _remove_network(conn, name):
    import libvirt  # pylint: disable=import-outside-toplevel

    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        if net.isActive():
            net.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        net.undefine()


@pytest.fixture
def netname(conn):
    """Factory of ``kvt-`` network names; every network made under them is removed afterwards."""
    made = []

    def make():
        made.append(sandbox.uid("net-"))
        return made[-1]

    try:
        yield make
    finally:
        for name in made:
            _remove_network(conn, name)


def _used_subnets(conn):
    from salt_kvm.network import _host_routes  # pylint: disable=import-outside-toplevel
    from salt_kvm.xml.network import Network  # pylint: disable=import-outside-toplevel

    used = [net for _iface, net in _host_routes()]
    for net in conn.listAllNetworks(0):
        with contextlib.suppress(Exception):
            for item in Network(net.XMLDesc(0)).ips():
                if item.interface:
                    used.append(ipaddress.ip_interface(item.interface).network)
    return used


@pytest.fixture
def subnet(conn):
    """Factory: a /27 (``ipaddress.IPv4Network``) of the documentation ranges that is free on this
    host."""
    taken = []

    def make(prefixlen=27):
        used = _used_subnets(conn) + taken
        for parent in (sandbox.ROOT_NS_RANGE,):
            for cand in ipaddress.ip_network(parent).subnets(new_prefix=prefixlen):
                if not any(cand.overlaps(u) for u in used):
                    taken.append(cand)
                    return cand
        pytest.skip("no documentation subnet is free on this host")
        return None

    return make


def _a(net, host=1):
    """``198.51.100.33/27`` for host number ``host`` of ``net``."""
    return f"{net[host]}/{net.prefixlen}"


def _bridge_name():
    return sandbox.uid("nb-")  # kvt-nb-xxxxxx: 13 characters


@pytest.fixture
def host_bridge():
    """A ``kvt-`` kernel bridge in the root namespace (for mode bridge), removed afterwards."""
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    name = sandbox.uid("hb-")
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    try:
        yield name
    finally:
        with IPRoute() as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


def _exists(conn, name):
    return name in [n.name() for n in conn.listAllNetworks(0)]


def _is_bridge(name):
    return os.path.isdir(f"/sys/class/net/{name}/bridge")


def _ifindex(name):
    with open(f"/sys/class/net/{name}/ifindex", encoding="ascii") as fh:
        return int(fh.read())


def _master(link):
    path = f"/sys/class/net/{link}/master"
    return os.path.basename(os.readlink(path)) if os.path.islink(path) else None


def _firewall_rules(bridge):
    """Lines of the host firewall (iptables/nftables) that mention ``bridge``."""
    for cmd in (["iptables-save"], ["nft", "list", "ruleset"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        return [line for line in out.splitlines() if bridge in line]
    pytest.skip("neither iptables-save nor nft is installed")
    return []


def _xml(conn, name, inactive=False):
    import libvirt  # pylint: disable=import-outside-toplevel

    net = conn.networkLookupByName(name)
    return etree.fromstring(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE if inactive else 0))


def _nat(bridge, net, **extra):
    spec = {
        "mode": "nat",
        "bridge": bridge,
        "address": _a(net),
        "dhcp": {"start": str(net[10]), "end": str(net[20])},
        "autostart": False,
    }
    spec.update(extra)
    return spec


# --- states ---------------------------------------------------------------------------


def test_nat_network(kvm_state, conn, netname, subnet, testmode):
    name, bridge, net4 = netname(), _bridge_name(), subnet()
    spec = _nat(bridge, net4, address6=f"2001:db8:{name[-4:]}::1/64")
    ret = kvm_state.network_present(name=name, test=testmode, **spec)
    if testmode:
        assert ret.result is None, ret.comment
        assert {
            "mode",
            "bridge",
            "address",
            "address6",
            "dhcp:start",
            "dhcp:end",
            "autostart",
            "active",
            "xml",
        } <= set(ret.changes)
        assert ret.changes["address"] == {"old": None, "new": _a(net4)}
        assert not _exists(conn, name) and not _is_bridge(bridge)
        return
    assert ret.result is True, ret.comment
    assert ret.changes["active"] == {"old": None, "new": True}
    net = conn.networkLookupByName(name)
    assert net.isActive() and not net.autostart()
    assert _is_bridge(bridge)
    rng = _xml(conn, name).find("ip/dhcp/range")
    assert (rng.get("start"), rng.get("end")) == (str(net4[10]), str(net4[20]))
    assert _firewall_rules(bridge), "libvirt's NAT rules for the bridge are missing"

    # re-apply: a no-op, in both modes
    for test in (False, True):
        again = kvm_state.network_present(name=name, test=test, **spec)
        assert again.result is True and again.changes == {}, (test, again.comment, again.changes)

    would = kvm_state.network_absent(name=name, test=True)
    assert would.result is None and would.changes["removed"]["old"]["bridge"] == bridge
    assert _exists(conn, name) and conn.networkLookupByName(name).isActive()
    gone = kvm_state.network_absent(name=name)
    assert gone.result is True and gone.changes == would.changes
    assert not _exists(conn, name) and not _is_bridge(bridge)
    assert _firewall_rules(bridge) == [], "libvirt left firewall rules behind"
    assert kvm_state.network_absent(name=name).changes == {}


@pytest.mark.parametrize("mode", ["isolated", "route", "open"])
def test_isolated_route_open(kvm_state, conn, netname, subnet, testmode, mode):
    name, bridge = netname(), _bridge_name()
    spec = {
        "mode": mode,
        "bridge": bridge,
        "address": _a(subnet()),
        "domain": "kvt.test",
        "mtu": 1400,
    }
    ret = kvm_state.network_present(name=name, test=testmode, **spec)
    if testmode:
        assert ret.result is None and ret.changes["mode"]["new"] == mode
        assert not _exists(conn, name)
        return
    assert ret.result is True, ret.comment
    root = _xml(conn, name)
    forward = root.find("forward")
    if mode == "isolated":
        assert forward is None
    else:
        assert forward.get("mode") == mode
    assert root.find("mtu").get("size") == "1400"
    assert _is_bridge(bridge)
    with open(f"/sys/class/net/{bridge}/mtu", encoding="ascii") as fh:
        assert fh.read().strip() == "1400"
    again = kvm_state.network_present(name=name, **spec)
    assert again.result is True and again.changes == {}, again.changes


def test_bridge_mode_and_mode_switch(kvm_state, conn, netname, subnet, host_bridge, testmode):
    """A libvirt network on a host bridge; switching NAT <-> bridge gives valid XML (salt#60667)."""
    name, bridge = netname(), _bridge_name()
    spec = {"mode": "bridge", "bridge": host_bridge, "autostart": False}
    ret = kvm_state.network_present(name=name, test=testmode, **spec)
    if testmode:
        assert ret.result is None and ret.changes["bridge"] == {"old": None, "new": host_bridge}
        assert not _exists(conn, name)
        return
    assert ret.result is True, ret.comment
    root = _xml(conn, name)
    assert (
        root.find("forward").get("mode") == "bridge"
        and root.find("bridge").get("name") == host_bridge
    )
    assert kvm_state.network_present(name=name, **spec).changes == {}

    # bridge -> nat (no VMs attached: the restart needs no permission)
    nat = _nat(bridge, subnet())
    ret = kvm_state.network_present(name=name, **nat)
    assert ret.result is True, ret.comment
    assert ret.changes["mode"] == {"old": "bridge", "new": "nat"}
    assert "restarted" in ret.comment
    assert _is_bridge(bridge) and _is_bridge(host_bridge)
    # nat -> bridge again: the addresses, DHCP and MAC go, the host bridge stays
    ret = kvm_state.network_present(name=name, **spec)
    assert ret.result is True, ret.comment
    root = _xml(conn, name, inactive=True)
    assert root.find("ip") is None and root.find("mac") is None
    assert not _is_bridge(bridge) and _is_bridge(host_bridge)


def test_dhcp_hosts_change_live(kvm_state, conn, netname, subnet, testmode):
    name, bridge, net4 = netname(), _bridge_name(), subnet()
    spec = _nat(bridge, net4)
    assert kvm_state.network_present(name=name, **spec).result is True
    ifindex = _ifindex(bridge)
    hosts = [{"mac": "52:54:00:6b:00:01", "ip": str(net4[5]), "name": "web1"}]
    spec["dhcp"] = dict(spec["dhcp"], hosts=hosts)
    ret = kvm_state.network_present(name=name, test=testmode, **spec)
    assert ret.changes["dhcp:hosts"] == {"old": [], "new": hosts}
    assert set(ret.changes) == {"dhcp:hosts", "xml"}
    assert "restart" not in ret.comment
    if testmode:
        assert ret.result is None
        assert _xml(conn, name).find("ip/dhcp/host") is None
        return
    assert ret.result is True, ret.comment
    for inactive in (False, True):  # live and persistent
        host = _xml(conn, name, inactive).find("ip/dhcp/host")
        assert (host.get("mac"), host.get("ip"), host.get("name")) == (
            "52:54:00:6b:00:01",
            str(net4[5]),
            "web1",
        )
    assert conn.networkLookupByName(name).isActive() and _ifindex(bridge) == ifindex, (
        "the network was restarted"
    )
    assert kvm_state.network_present(name=name, **spec).changes == {}

    # another host instead, and a new range: still live
    spec["dhcp"] = {
        "start": str(net4[21]),
        "end": str(net4[29]),
        "hosts": [{"mac": "52:54:00:6b:00:02", "ip": str(net4[6])}],
    }
    ret = kvm_state.network_present(name=name, **spec)
    assert ret.result is True and len(ret.changes["dhcp:hosts"]["new"]) == 1, ret.comment
    assert ret.changes["dhcp:start"] == {"old": str(net4[10]), "new": str(net4[21])}
    assert "restart" not in ret.comment
    for inactive in (False, True):
        root = _xml(conn, name, inactive)
        assert [h.get("mac") for h in root.findall("ip/dhcp/host")] == ["52:54:00:6b:00:02"]
        assert (root.find("ip/dhcp/range").get("start"), root.find("ip/dhcp/range").get("end")) == (
            str(net4[21]),
            str(net4[29]),
        )
    assert _ifindex(bridge) == ifindex, "the network was restarted"
    assert kvm_state.network_present(name=name, **spec).changes == {}


def test_restart_guard_with_a_vm_attached(kvm_state, kvm, conn, netname, subnet, tiny_vm):
    name, bridge = netname(), _bridge_name()
    spec = _nat(bridge, subnet())
    assert kvm_state.network_present(name=name, **spec).result is True
    dom, _disk = tiny_vm(network=name, start=True)
    vm = dom.name()
    tap = etree.fromstring(dom.XMLDesc(0)).find("devices/interface/target").get("dev")
    assert _master(tap) == bridge

    info = kvm.network_show(name)
    assert info["attached"] == [vm] and info["vms"] == [vm] and info["interfaces"][0]["tap"] == tap

    # a live change (a static DHCP host) goes through with the VM attached, no restart
    with_host = dict(
        spec,
        dhcp=dict(
            spec["dhcp"],
            hosts=[
                {"mac": info["interfaces"][0]["mac"], "ip": spec["dhcp"]["start"], "name": "tiny"}
            ],
        ),
    )
    ret = kvm_state.network_present(name=name, **with_host)
    assert ret.result is True and set(ret.changes) == {"dhcp:hosts", "xml"}, ret.comment
    assert _master(tap) == bridge

    changed = dict(with_host, domain="kvt.test")
    for test in (True, False):
        ret = kvm_state.network_present(name=name, test=test, **changed)
        assert ret.result is False, (test, ret.comment)
        assert vm in ret.comment and "restart: True" in ret.comment
    assert _xml(conn, name, inactive=True).find("domain") is None

    ret = kvm_state.network_present(name=name, test=True, restart=True, **changed)
    assert ret.result is None and "would be restarted" in ret.comment and vm in ret.comment
    ret = kvm_state.network_present(name=name, restart=True, **changed)
    assert ret.result is True, ret.comment
    assert (
        ret.changes["domain"] == {"old": None, "new": "kvt.test"} and "was restarted" in ret.comment
    )
    assert _xml(conn, name).find("domain").get("name") == "kvt.test"
    assert _master(tap) == bridge, "the VM's tap was not put back on the bridge"

    # the absent guard (state and execution functions)
    ret = kvm_state.network_absent(name=name)
    assert ret.result is False and vm in ret.comment and _exists(conn, name)
    with pytest.raises(CommandExecutionError, match=vm):
        kvm.network_stop(name)
    with pytest.raises(CommandExecutionError, match=vm):
        kvm.network_undefine(name)
    ret = kvm_state.network_absent(name=name, force=True)
    assert ret.result is True and not _exists(conn, name)
    assert dom.isActive()


BAD = [
    ({"mode": "nated"}, "is not one of nat, route, isolated, open, bridge"),
    ({"bridge": "kvt-0123456789abc"}, "longer than 15 characters"),
    (
        {"address": "198.51.100.1/26", "dhcp": {"start": "198.51.100.10", "end": "198.51.100.99"}},
        "198.51.100.99 is outside the network 198.51.100.0/26",
    ),
    (
        {"address": "198.51.100.1/26", "dhcp": {"start": "198.51.100.1", "end": "198.51.100.9"}},
        "overlaps the network's own address",
    ),
    ({"mode": "bridge", "bridge": "kvt-nosuchbr0"}, "host bridge 'kvt-nosuchbr0' does not exist"),
    ({"mode": "isolated", "dev": "eth0"}, "can only be set in mode nat or route"),
    ({"mode": "route"}, "is required in mode route"),
]


@pytest.mark.parametrize("kwargs,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_input_changes_nothing(kvm_state, conn, netname, kwargs, message):
    name = netname()
    ret = kvm_state.network_present(name=name, **kwargs)
    assert ret.result is False and message in ret.comment, ret.comment
    assert ret.changes == {}
    assert not _exists(conn, name)


def test_overlapping_networks(kvm_state, conn, netname, subnet):
    first, second, net4 = netname(), netname(), subnet()
    assert (
        kvm_state.network_present(
            name=first, mode="isolated", bridge=_bridge_name(), address=_a(net4)
        ).result
        is True
    )
    inner = list(net4.subnets(new_prefix=28))[1]
    ret = kvm_state.network_present(name=second, mode="isolated", address=_a(inner))
    assert ret.result is False and f"overlaps libvirt network '{first}'" in ret.comment
    assert not _exists(conn, second)


# --- execution functions ---------------------------------------------------------------


def test_execution_functions(kvm, conn, netname, subnet):
    name, bridge, net4 = netname(), _bridge_name(), subnet()
    dhcp = {"start": str(net4[10]), "end": str(net4[20])}
    info = kvm.network_define(name, mode="isolated", bridge=bridge, address=_a(net4), dhcp=dhcp)
    assert info["mode"] == "isolated" and info["active"] is False and info["persistent"] is True
    assert info["dhcp"] == dict(dhcp, hosts=[])
    assert kvm.network_list()[name] == {
        "mode": "isolated",
        "bridge": bridge,
        "active": False,
        "autostart": False,
        "persistent": True,
    }
    assert kvm.network_start(name) is True
    assert kvm.network_show(name)["active"] is True and _is_bridge(bridge)
    assert kvm.network_autostart(name) is True and conn.networkLookupByName(name).autostart()
    assert kvm.network_autostart(name, enabled=False) is False
    assert kvm.network_leases(name) == []
    assert kvm.network_stop(name) is True and not _is_bridge(bridge)
    assert kvm.network_undefine(name) is True and not _exists(conn, name)
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.network_show(name)
    with pytest.raises(SaltInvocationError, match="mode"):
        kvm.network_define(name, mode="nated")
    assert not _exists(conn, name)


def test_present_starts_a_defined_network(kvm, kvm_state, conn, netname, subnet, testmode):
    name, bridge, net4 = netname(), _bridge_name(), subnet()
    spec = {"mode": "route", "bridge": bridge, "address": _a(net4)}
    kvm.network_define(name, **spec)
    ret = kvm_state.network_present(name=name, test=testmode, **spec)
    assert ret.changes == {"active": {"old": False, "new": True}}
    assert ret.comment.endswith("started")
    assert bool(conn.networkLookupByName(name).isActive()) is (not testmode)


@pytest.mark.parametrize(
    "golden",
    sorted(
        p.name for p in GOLDEN.glob("*.xml") if p.name.startswith(("build_", "switch_", "edit_"))
    ),
)
def test_golden_xml_is_accepted_by_libvirt(conn, netname, golden):
    """Every XML the unit tests pin is valid for the real libvirtd (defined, then removed)."""
    import libvirt  # pylint: disable=import-outside-toplevel

    root = etree.fromstring((GOLDEN / golden).read_bytes())
    root.find("name").text = netname()
    for tag in ("uuid", "mac"):
        for node in root.findall(tag):
            root.remove(node)
    bridge = root.find("bridge")
    if bridge is not None and (
        root.find("forward") is None or root.find("forward").get("mode") != "bridge"
    ):
        bridge.set("name", _bridge_name())
    xml = etree.tostring(root, encoding="unicode")
    if hasattr(
        conn, "networkDefineXMLFlags"
    ):  # libvirt >= 7.7: validate against the RNG schema too
        net = conn.networkDefineXMLFlags(xml, libvirt.VIR_NETWORK_DEFINE_VALIDATE)
    else:
        net = conn.networkDefineXML(xml)
    net.undefine()


@pytest.fixture
def busy_subnet(subnet):
    """A free subnet put on a ``kvt-`` bridge in the root namespace: libvirt refuses a network on
    it."""
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    name, net4 = sandbox.uid("dm-"), subnet()
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")  # no dummy module on every host
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=idx, address=str(net4[1]), prefixlen=net4.prefixlen)
        ipr.link("set", index=idx, state="up")
    try:
        yield name, net4
    finally:
        with IPRoute() as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


def test_routed_subnet_is_refused_before_anything_changes(kvm_state, conn, netname, busy_subnet):
    link, net4 = busy_subnet
    name = netname()
    for test in (True, False):
        ret = kvm_state.network_present(name=name, test=test, mode="isolated", address=_a(net4, 5))
        assert (
            ret.result is False
            and f"{net4} is already routed on the host through {link}" in ret.comment
        ), ret.comment
        assert not _exists(conn, name)


def test_failed_apply_restores_the_host(kvm_state, conn, netname, subnet, monkeypatch):
    """A change whose read-back does not verify is rolled back: old definition, running,
    autostart."""
    from salt_kvm import network  # pylint: disable=import-outside-toplevel

    name, bridge, net4 = netname(), _bridge_name(), subnet()
    spec = {"mode": "isolated", "bridge": bridge, "address": _a(net4), "autostart": True}
    assert kvm_state.network_present(name=name, **spec).result is True
    monkeypatch.setattr(
        network.NetworkResource,
        "verify",
        lambda self, plan, after: {"mtu": {"old": None, "new": 1400}},
    )

    new, new_bridge = netname(), _bridge_name()  # a new network is removed again
    ret = kvm_state.network_present(
        name=new, mode="isolated", bridge=new_bridge, address=_a(subnet())
    )
    assert ret.result is False and "removed again" in ret.comment, ret.comment
    assert not _exists(conn, new) and not _is_bridge(new_bridge)

    ret = kvm_state.network_present(
        name=name, **dict(spec, mtu=1400, domain="kvt.test", autostart=False)
    )
    assert ret.result is False and "restored network" in ret.comment, ret.comment
    net = conn.networkLookupByName(name)
    assert net.isActive() and net.autostart() and _is_bridge(bridge)
    for inactive in (False, True):
        root = _xml(conn, name, inactive)
        assert root.find("mtu") is None and root.find("domain") is None
