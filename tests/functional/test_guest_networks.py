"""libvirt networks as a real guest sees them: its DHCP lease, its gateway, what
it can and cannot reach. Each network takes a free /27 of the root namespace's
documentation range (its bridge lives in the root namespace)."""

import contextlib
import ipaddress
import subprocess

import libvirt
import pytest

from tests.support import guest as guestlib
from tests.support import sandbox

RESERVED_MAC = "52:54:00:17:00:05"
OTHER_MAC = "52:54:00:17:00:06"


@pytest.fixture
def net_factory(conn):
    """Factory: ``net_factory()`` -> ``(name, bridge, subnet)``; the networks are removed
    afterwards."""
    made, taken = [], []

    def make(prefixlen=27):
        subnet = guestlib.free_subnet(conn, prefixlen, taken=taken)
        if subnet is None:
            pytest.skip("no documentation subnet is free in the root namespace")
        taken.append(subnet)
        made.append(sandbox.uid("net-"))
        return made[-1], sandbox.uid("nb-"), subnet

    try:
        yield make
    finally:
        for name in made:
            with contextlib.suppress(libvirt.libvirtError):
                net = conn.networkLookupByName(name)
                with contextlib.suppress(libvirt.libvirtError):
                    net.destroy()
                net.undefine()


def test_nat_guest_gets_its_reserved_lease_and_reaches_the_gateway(
    kvm_state, kvm, guests, net_factory
):
    """Two guests on a NAT network: the one with a reserved MAC gets its reserved address, the
    other one from the range; both reach the gateway; ``network_leases`` lists both; a
    reservation added live does not cut them off. Catches: a DHCP config dnsmasq does not serve
    (no lease, or the wrong address), a live change that restarts the network (the guests lose
    their bridge and their pings stop)."""
    name, bridge, subnet = net_factory()
    gateway, reserved = str(subnet[1]), str(subnet[5])
    dhcp = {
        "start": str(subnet[10]),
        "end": str(subnet[20]),
        "hosts": [{"mac": RESERVED_MAC, "ip": reserved, "name": "kvt-reserved"}],
    }
    ret = kvm_state.network_present(
        name=name, mode="nat", bridge=bridge, address=f"{gateway}/{subnet.prefixlen}", dhcp=dhcp
    )
    assert ret.result is True, ret.comment
    first = guests(nics=[{"network": name, "mac": RESERVED_MAC}], work=["dhcp"], wait_ready=False)
    second = guests(nics=[{"network": name, "mac": OTHER_MAC}], work=["dhcp"], wait_ready=False)
    assert first.wait_line("lease", timeout=120) == f"lease {reserved} router {gateway}"
    lease = second.wait_line("lease", timeout=120).split()
    assert subnet[10] <= ipaddress.ip_address(lease[1]) <= subnet[20] and lease[3] == gateway, lease
    first.wait_replies(3, source=gateway)
    second.wait_replies(3, source=gateway)
    leases = {lease["mac"]: lease for lease in kvm.network_leases(name)}
    assert leases[RESERVED_MAC]["ip"] == reserved, leases
    assert leases[OTHER_MAC]["ip"] == lease[1], leases

    marks = (first.offset(), second.offset())
    dhcp["hosts"].append({"mac": "52:54:00:17:00:07", "ip": str(subnet[7]), "name": "kvt-later"})
    live = kvm_state.network_present(
        name=name, mode="nat", bridge=bridge, address=f"{gateway}/{subnet.prefixlen}", dhcp=dhcp
    )
    assert live.result is True and "dhcp:hosts" in live.changes, live.comment
    for g, mark in zip((first, second), marks):
        seqs = g.wait_replies(8, since=mark, source=gateway, timeout=30)
        assert guestlib.longest_gap(seqs) <= 1.0, f"the live reservation cut {g.name} off: {seqs}"


@pytest.fixture
def routed_lan(conn, net_factory):
    """A LAN namespace behind a ``kvt-`` veth in the root namespace (the host has the uplink's
    address and the LAN routes the guest networks back through it): ``(lan, subnet_of_lan)``."""
    net = guestlib.free_subnet(conn, 28)
    if net is None:
        pytest.skip("no documentation subnet is free in the root namespace")
    lan = guestlib.RootLan(net).create()
    from pyroute2 import IPRoute, NetNS  # pylint: disable=import-outside-toplevel

    try:
        with IPRoute() as ipr:
            ipr.addr(
                "add",
                index=ipr.link_lookup(ifname=lan.uplink)[0],
                address=lan.host.split("/")[0],
                prefixlen=net.prefixlen,
            )
        with NetNS(lan.ns) as ns:
            ns.route("add", dst=sandbox.ROOT_NS_RANGE, gateway=lan.host.split("/")[0])
        yield lan
    finally:
        lan.remove()


def test_isolated_guest_reaches_the_host_not_the_lan(kvm_state, guests, net_factory, routed_lan):
    """On an isolated network the guest reaches the host's address on the network but not a LAN
    the host itself reaches (and routes back). Catches: an isolated network that forwards."""
    name, bridge, subnet = net_factory()
    host = str(subnet[1])
    ret = kvm_state.network_present(
        name=name, mode="isolated", bridge=bridge, address=f"{host}/{subnet.prefixlen}"
    )
    assert ret.result is True, ret.comment
    assert (
        subprocess.run(
            ["ping", "-c", "1", "-W", "2", routed_lan.gateway], capture_output=True, check=False
        ).returncode
        == 0
    )
    g = guests(
        nics=[{"network": name}],
        ip=f"{subnet[5]}/{subnet.prefixlen}",
        gw=host,
        work=[f"ping:{host}", f"ping:{routed_lan.gateway}"],
    )
    g.wait_replies(10, source=host, timeout=60)
    assert g.ping_seqs(source=routed_lan.gateway) == [], "the isolated guest reached the LAN"


def test_routed_guest_is_reached_from_the_lan_by_its_own_address(
    kvm_state, guests, net_factory, routed_lan
):
    """On a routed network the guest reaches the LAN and the LAN reaches the guest by the guest's
    own address (no NAT on the way). Catches: a routed network that does not forward, or one that
    masquerades (the LAN would not reach the guest's address)."""
    name, bridge, subnet = net_factory()
    host, addr = str(subnet[1]), str(subnet[5])
    ret = kvm_state.network_present(
        name=name, mode="route", bridge=bridge, address=f"{host}/{subnet.prefixlen}"
    )
    assert ret.result is True, ret.comment
    g = guests(
        nics=[{"network": name}],
        ip=f"{addr}/{subnet.prefixlen}",
        gw=host,
        work=[f"ping:{routed_lan.gateway}"],
    )
    g.wait_replies(5, source=routed_lan.gateway, timeout=60)
    back = subprocess.run(
        ["ip", "netns", "exec", routed_lan.ns, "ping", "-c", "3", "-W", "2", addr],
        capture_output=True,
        text=True,
        check=False,
    )
    assert back.returncode == 0, back.stdout + back.stderr


def test_bridge_forward_network_puts_the_guest_on_the_host_bridge(
    kvm_state, kvm, guests, net_factory, conn
):
    """A ``mode: bridge`` network onto a bridge salt-kvm declared (uplink a veth to the LAN): the
    guest's tap lands on that bridge and the guest pings the LAN through it."""
    net = guestlib.free_subnet(conn, 28)
    if net is None:
        pytest.skip("no documentation subnet is free in the root namespace")
    lan = guestlib.RootLan(net).create()
    try:
        assert (
            kvm_state.bridge_present(
                name=lan.bridge, ports=[lan.uplink], stp=False, forward_delay=0
            ).result
            is True
        )
        name, _bridge, _subnet = net_factory()
        ret = kvm_state.network_present(name=name, mode="bridge", bridge=lan.bridge)
        assert ret.result is True, ret.comment
        g = guests(nics=[{"network": name}], ip=lan.guest, work=[f"ping:{lan.gateway}"])
        g.wait_replies(5, source=lan.gateway, timeout=60)
        taps = [p for p in kvm.bridge_show(lan.bridge)["ports"] if p["kind"] == "tun"]
        assert [t["vm"] for t in taps] == [g.name], taps
        g.dom.destroy()
    finally:
        lan.remove()
