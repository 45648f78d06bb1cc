"""Kernel bridges for real: ``kvm.bridge_*`` and the ``kvm.bridge_present`` /
``kvm.bridge_absent`` states, in throwaway network namespaces (the ``lan``
fixture: a "host" netns whose NIC ``eno1`` holds 192.0.2.10/24 and the default
route via 192.0.2.1, the gateway living in a "LAN" netns), plus one real tiny
VM on a ``kvt-`` bridge in the root namespace (where libvirtd lives).
"""

import contextlib
import glob
import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import kernel, sandbox

UPLINK = {"ports": ["eno1"], "stp": False, "forward_delay": 0}
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _remove_test_lock_files():
    """The bridge lock files (/run/salt-kvm/bridge-kvt-*.lock) the test's namespaces got."""
    pattern = "/run/salt-kvm/bridge-kvt-*.lock"
    before = set(glob.glob(pattern))
    yield
    for path in set(glob.glob(pattern)) - before:
        with contextlib.suppress(OSError):
            os.remove(path)


def _ns_link(ns_name, name):
    from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

    with NetNS(ns_name, flags=0) as ns:
        idx = ns.link_lookup(ifname=name)
        return ns.get_links(idx[0])[0] if idx else None


def _ns_do(ns_name, func):
    from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

    with NetNS(ns_name, flags=0) as ns:
        return func(ns)


# --- uplink migration, probe, rollback -----------------------------------------


def test_uplink_migration_moves_address_and_default_route(kvm_state, kvm, lan, testmode):
    before = lan.dump()
    if testmode:
        ret = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, test=True, **UPLINK)
        assert ret.result is None
        assert set(ret.changes) >= {"bridge", "ports", "addresses", "gateway", "mac", "uplink"}
        assert ret.changes["uplink"]["old"] == {"eno1": ["192.0.2.10/24", "default via 192.0.2.1"]}
        assert lan.dump() == before, "test=True changed the host"
    ret = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, **UPLINK)
    assert ret.result is True, ret.comment
    assert ret.changes["addresses"]["new"] == ["192.0.2.10/24"]
    dump = lan.dump()
    assert ("kvt-br0", "192.0.2.10", 24) in dump["addresses"]
    assert ("eno1", "192.0.2.10", 24) not in dump["addresses"]
    assert ("None", 0, "192.0.2.1", "kvt-br0", 254) in dump["routes"]
    eno1_mac = [link[1] for link in before["links"] if link[0] == "eno1"][0]
    assert [link for link in dump["links"] if link[0] == "kvt-br0"][0][1] == eno1_mac, (
        "the bridge took the uplink's MAC"
    )
    assert lan.run("ping", "-c", "1", "-W", "2", "192.0.2.1").returncode == 0
    show = kvm.bridge_show("kvt-br0", netns=lan.host)
    assert [p["name"] for p in show["ports"]] == ["eno1"]
    assert show["gateway"] == "192.0.2.1" and show["stp"] is False and show["forward_delay"] == 0
    # a second run (and a second test run) changes nothing
    for test in (True, False):
        again = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, test=test, **UPLINK)
        assert again.result is True and again.changes == {}, again.comment
    assert lan.dump() == dump


def test_failed_probe_restores_the_host_exactly(kvm_state, lan):
    lan.add_nic("eno2")

    def extra(ns):
        ns.addr("add", index=ns.link_lookup(ifname="eno2")[0], address="198.51.100.5", prefixlen=24)
        ns.route("add", dst="203.0.113.0/24", gateway="198.51.100.1")
        ns.addr(
            "add",
            index=ns.link_lookup(ifname="eno1")[0],
            address="2001:db8::10",
            prefixlen=64,
            flags=0x2,
        )

    _ns_do(lan.host, extra)
    before = lan.dump()
    spec = {
        "ports": ["eno1", "eno2"],
        "stp": False,
        "forward_delay": 0,
        "mtu": 1400,
        "probe": {"ping": "192.0.2.99", "timeout": "1s"},
    }
    ret = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, **spec)
    assert ret.result is False
    assert "probe failed: no reply to ping 192.0.2.99" in ret.comment
    assert "restored" in ret.comment
    assert lan.dump() == before
    assert lan.run("ping", "-c", "1", "-W", "2", "192.0.2.1").returncode == 0


def test_tcp_probe_that_fails_rolls_back(kvm_state, lan):
    before = lan.dump()
    ret = kvm_state.bridge_present(
        name="kvt-br0", netns=lan.host, probe={"tcp": "192.0.2.1:9", "timeout": 1}, **UPLINK
    )
    assert ret.result is False and "no TCP connection to 192.0.2.1:9" in ret.comment
    assert lan.dump() == before


# --- attributes ------------------------------------------------------------------


def test_stp_timers_mtu_and_port_attributes(kvm_state, kvm, lan, testmode):
    lan.add_nic("eno2")
    spec = {
        "ports": [{"name": "eno2", "cost": 7, "priority": 9, "hairpin": True}],
        "stp": True,
        "forward_delay": 4,
        "hello_time": 1.5,
        "max_age": 12,
        "ageing_time": 123.45,
        "priority": 4096,
        "mcast_snooping": False,
        "mtu": 1400,
    }
    before = lan.dump()
    ret = kvm_state.bridge_present(name="kvt-brs", netns=lan.host, test=testmode, **spec)
    if testmode:
        assert ret.result is None and lan.dump() == before
        ret = kvm_state.bridge_present(name="kvt-brs", netns=lan.host, **spec)
    assert ret.result is True, ret.comment
    assert "uplink" not in ret.changes and "probe" not in ret.comment
    show = kvm.bridge_show("kvt-brs", netns=lan.host)
    assert (
        show["stp"] is True
        and show["forward_delay"] == 4
        and show["hello_time"] == 1.5
        and show["max_age"] == 12
    )
    assert show["ageing_time"] in (None, 123.44, 123.45)  # None while STP reports a topology change
    assert show["priority"] == 4096 and show["id"].startswith("1000.")
    assert show["mcast_snooping"] is False and show["mtu"] == 1400
    port = show["ports"][0]
    assert (port["name"], port["cost"], port["priority"], port["hairpin"]) == ("eno2", 7, 9, True)
    again = kvm_state.bridge_present(name="kvt-brs", netns=lan.host, **spec)
    assert again.result is True and again.changes == {}, again.changes
    # change one timer: only that key changes
    spec["forward_delay"] = 5
    ret = kvm_state.bridge_present(name="kvt-brs", netns=lan.host, **spec)
    assert ret.result is True and set(ret.changes) == {"forward_delay"}


def test_ipv6_addresses_and_gateway(kvm_state, kvm, lan):
    lan.add_nic("eno2", peer="leno2")
    _ns_do(
        lan.lan,
        lambda ns: ns.addr(
            "add",
            index=ns.link_lookup(ifname="leno2")[0],
            address="2001:db8:1::1",
            prefixlen=64,
            flags=0x2,
        ),
    )
    spec = {
        "ports": ["eno2"],
        "stp": False,
        "forward_delay": 0,
        "addresses": ["2001:db8:1::10/64"],
        "gateway6": "2001:db8:1::1",
        "routes": [{"to": "2001:db8:2::/64", "via": "2001:db8:1::1", "metric": 10}],
    }
    ret = kvm_state.bridge_present(name="kvt-br6", netns=lan.host, **spec)
    assert ret.result is True, ret.comment  # the default probe pinged the IPv6 gateway
    show = kvm.bridge_show("kvt-br6", netns=lan.host)
    assert show["addresses"] == ["2001:db8:1::10/64"] and show["gateway6"] == "2001:db8:1::1"
    assert show["routes"] == [{"to": "2001:db8:2::/64", "via": "2001:db8:1::1", "metric": 10}]
    assert kvm_state.bridge_present(name="kvt-br6", netns=lan.host, **spec).changes == {}


@pytest.mark.kernel
def test_vlan_filtering_trunk_and_access_ports(kvm_state, kvm, lan):
    if not kernel.has_bridge_vlan_filtering():
        pytest.skip(
            "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING is off); "
            "make test-kernel runs this test"
        )
    lan.add_nic("eno2")
    lan.add_nic("eno3")
    spec = {
        "vlan_filtering": True,
        "default_pvid": 1,
        "ports": [
            {"name": "eno2", "vlans": {"tagged": ["100-102", 200]}},
            {"name": "eno3", "vlans": {"pvid": 100}},
        ],
    }
    ret = kvm_state.bridge_present(name="kvt-brv", netns=lan.host, **spec)
    assert ret.result is True, ret.comment
    ports = {p["name"]: p for p in kvm.bridge_show("kvt-brv", netns=lan.host)["ports"]}
    assert ports["eno2"]["vlans"] == {"pvid": None, "untagged": [], "tagged": [100, 101, 102, 200]}
    assert ports["eno3"]["vlans"] == {"pvid": 100, "untagged": [100], "tagged": []}
    assert kvm_state.bridge_present(name="kvt-brv", netns=lan.host, **spec).changes == {}


@pytest.mark.kernel
def test_vlan_subinterface_port_is_created(kvm_state, lan):
    if not kernel.has_8021q():
        pytest.skip(
            "this kernel has no 802.1Q VLAN interfaces (CONFIG_VLAN_8021Q is off); make "
            "test-kernel runs this test"
        )
    lan.add_nic("eno2")
    ret = kvm_state.bridge_present(name="kvt-b100", netns=lan.host, ports=["eno2.100"], stp=False)
    assert ret.result is True, ret.comment
    assert _ns_link(lan.host, "eno2.100").get_attr("IFLA_MASTER")
    assert (
        kvm_state.bridge_present(
            name="kvt-b100", netns=lan.host, ports=["eno2.100"], stp=False
        ).changes
        == {}
    )


# --- bad input changes nothing --------------------------------------------------------


@pytest.mark.parametrize(
    "name,spec,message",
    [
        ("kvt-a-very-long-name", {"ports": ["eno1"]}, "longer than 15 characters"),
        ("kvt-br0", {"ports": ["eno9"]}, "kvt-br0:ports:0: 'eno9' does not exist"),
        (
            "kvt-br0",
            {"ports": ["eno1"], "addresses": ["192.0.2.300/24"]},
            "kvt-br0:addresses:0: '192.0.2.300/24' is not a valid CIDR address",
        ),
        (
            "kvt-br0",
            {"ports": [{"name": "eno1", "vlans": {"tagged": [4095]}}], "vlan_filtering": True},
            "4095 is out of VLAN range 1-4094",
        ),
        (
            "kvt-br0",
            {"ports": [{"name": "eno1", "vlans": {"pvid": 10}}]},
            "needs vlan_filtering: true",
        ),
        (
            "kvt-br0",
            {"ports": ["eno1"], "stp": "maybe"},
            "kvt-br0:stp: 'maybe' is not true or false",
        ),
        ("eno1", {"ports": []}, "not a bridge"),
    ],
    ids=[
        "long-name",
        "unknown-port",
        "bad-cidr",
        "vlan-range",
        "vlan-without-filtering",
        "bad-bool",
        "not-a-bridge",
    ],
)
def test_bad_input_fails_and_changes_nothing(kvm_state, lan, name, spec, message):
    before = lan.dump()
    ret = kvm_state.bridge_present(name=name, netns=lan.host, **spec)
    assert ret.result is False
    assert message in ret.comment
    assert lan.dump() == before


def test_port_of_another_bridge_is_refused(kvm_state, kvm, lan):
    lan.add_nic("eno2")
    assert kvm_state.bridge_present(name="kvt-bra", netns=lan.host, ports=["eno2"]).result is True
    before = lan.dump()
    ret = kvm_state.bridge_present(name="kvt-brb", netns=lan.host, ports=["eno2"])
    assert ret.result is False and "'eno2' is already a port of bridge 'kvt-bra'" in ret.comment
    assert lan.dump() == before
    with pytest.raises(SaltInvocationError, match="already a port of bridge"):
        kvm.bridge_create("kvt-brb", netns=lan.host, ports=["eno2"])


# --- execution functions and bridge_absent -----------------------------------------------


def test_execution_functions(kvm, lan):
    lan.add_nic("eno2")
    lan.add_nic("eno3")
    out = kvm.bridge_create("kvt-brx", netns=lan.host, ports=["eno2"], stp=False, forward_delay=0)
    assert "bridge" in out["changes"]
    with pytest.raises(CommandExecutionError, match="already exists"):
        kvm.bridge_create("kvt-brx", netns=lan.host)
    kvm.bridge_set("kvt-brx", netns=lan.host, mtu=1400, ageing_time=60)
    kvm.bridge_port_add("kvt-brx", "eno3", netns=lan.host, cost=5)
    listed = {b["name"]: b for b in kvm.bridge_list(netns=lan.host)}
    assert listed["kvt-brx"]["ports"] == ["eno2", "eno3"] and listed["kvt-brx"]["stp"] is False
    show = kvm.bridge_show("kvt-brx", netns=lan.host)
    assert show["mtu"] == 1400 and show["ageing_time"] == 60
    assert [p["cost"] for p in show["ports"] if p["name"] == "eno3"] == [5]
    fdb = kvm.bridge_fdb("kvt-brx", netns=lan.host)
    eno3_mac = _ns_link(lan.host, "eno3").get_attr("IFLA_ADDRESS")
    assert {"mac": eno3_mac, "port": "eno3", "vlan": None, "kind": "local", "vm": None} in fdb
    kvm.bridge_port_remove("kvt-brx", "eno3", netns=lan.host)
    assert [p["name"] for p in kvm.bridge_show("kvt-brx", netns=lan.host)["ports"]] == ["eno2"]
    with pytest.raises(SaltInvocationError, match="not a port"):
        kvm.bridge_port_remove("kvt-brx", "eno3", netns=lan.host)
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.bridge_show("kvt-nope", netns=lan.host)
    assert kvm.bridge_delete("kvt-brx", netns=lan.host) == {"deleted": "kvt-brx"}
    assert _ns_link(lan.host, "kvt-brx") is None


def test_bridge_absent(kvm_state, lan, testmode):
    lan.add_nic("eno2")
    assert kvm_state.bridge_present(name="kvt-brx", netns=lan.host, ports=["eno2"]).result is True
    ret = kvm_state.bridge_absent(name="kvt-brx", netns=lan.host, test=testmode)
    assert ret.result is (None if testmode else True) and "removed" in ret.changes
    assert (_ns_link(lan.host, "kvt-brx") is None) is (not testmode)
    if not testmode:
        assert kvm_state.bridge_absent(name="kvt-brx", netns=lan.host).changes == {}


def test_bridge_absent_refuses_to_cut_the_host_off(kvm_state, lan):
    assert kvm_state.bridge_present(name="kvt-br0", netns=lan.host, **UPLINK).result is True
    ret = kvm_state.bridge_absent(name="kvt-br0", netns=lan.host)
    assert ret.result is False and "carries the host's addresses" in ret.comment
    assert _ns_link(lan.host, "kvt-br0") is not None


# --- persistence --------------------------------------------------------------------------


def test_persist_ifupdown_files_are_valid_and_stable(kvm_state, lan, tmp_path):
    if not shutil.which("ifquery"):
        pytest.skip("ifquery (Debian package ifupdown) is not installed")
    etc = tmp_path / "etc" / "network"
    (etc / "interfaces.d").mkdir(parents=True)
    (etc / "interfaces").write_text(
        "auto lo\niface lo inet loopback\n\nauto eno1\niface eno1 inet static\n    address "
        "192.0.2.10/24\n    gateway 192.0.2.1\n"
    )
    spec = dict(UPLINK, persist="auto")
    ret = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, root=str(tmp_path), **spec)
    assert ret.result is True, ret.comment
    assert ret.changes["persist"]["new"]["backend"] == "ifupdown"
    written = etc / "interfaces.d" / "salt-kvm-kvt-br0"
    text = written.read_text()
    assert (
        "bridge_ports eno1" in text
        and "address 192.0.2.10/24" in text
        and "gateway 192.0.2.1" in text
    )
    assert "# salt-kvm: iface eno1 inet static" in (etc / "interfaces").read_text()
    main = (etc / "interfaces").read_text().replace("source /etc/network/interfaces.d/*", "")
    combined = tmp_path / "combined"
    combined.write_text(main + "\n" + text)
    out = subprocess.run(
        ["ifquery", "-i", str(combined), "kvt-br0"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert (
        "bridge_ports: eno1" in out.stdout
        and "address: 192.0.2.10\n" in out.stdout
        and "netmask: 255.255.255.0" in out.stdout
    )
    assert (
        subprocess.run(
            ["ifquery", "-i", str(combined), "eno1"], capture_output=True, text=True, check=False
        ).stdout.strip()
        == ""
    )
    again = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, root=str(tmp_path), **spec)
    assert again.result is True and again.changes == {}


def test_persist_rolled_back_with_the_probe(kvm_state, lan, tmp_path):
    ret = kvm_state.bridge_present(
        name="kvt-br0",
        netns=lan.host,
        root=str(tmp_path),
        persist="networkd",
        probe={"ping": "192.0.2.99", "timeout": 1},
        **UPLINK,
    )
    assert ret.result is False
    assert not list(tmp_path.rglob("*.network")), "persisted files outlived the rollback"


# --- a real VM on a bridge in the root namespace ----------------------------------------------


@pytest.fixture
def root_bridge():
    name = sandbox.uid("br-")
    try:
        yield name
    finally:
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

        with IPRoute() as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


def test_vm_tap_is_shown_kept_and_guarded(kvm_state, kvm, tiny_vm, root_bridge):
    ret = kvm_state.bridge_present(name=root_bridge, stp=False, forward_delay=0)
    assert ret.result is True, ret.comment
    mac = "52:54:00:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3])
    dom, _disk = tiny_vm(start=True, bridge=root_bridge, mac=mac)
    show = kvm.bridge_show(root_bridge)
    taps = [p for p in show["ports"] if p["kind"] == "tun"]
    assert len(taps) == 1 and taps[0]["vm"] == dom.name() and taps[0]["vm_mac"] == mac
    listed = {b["name"]: b for b in kvm.bridge_list()}[root_bridge]
    assert listed["ports"] == [taps[0]["name"]] and listed["vms"] == {taps[0]["name"]: dom.name()}
    from salt_kvm import output  # pylint: disable=import-outside-toplevel

    assert f"{taps[0]['name']} ({dom.name()})" in "\n".join(output.bridge_lines([listed]))
    again = kvm_state.bridge_present(name=root_bridge, stp=False, forward_delay=0)
    assert again.result is True and again.changes == {}
    assert [p["name"] for p in kvm.bridge_show(root_bridge)["ports"]] == [taps[0]["name"]], (
        "the tap was removed"
    )
    refused = kvm_state.bridge_absent(name=root_bridge)
    assert (
        refused.result is False
        and "VM taps are attached" in refused.comment
        and dom.name() in refused.comment
    )
    with pytest.raises(CommandExecutionError, match="VM taps are attached"):
        kvm.bridge_delete(root_bridge)
    dom.destroy()
    assert kvm_state.bridge_absent(name=root_bridge).result is True


def test_default_probe_checks_the_salt_master_behind_the_uplink(lan, monkeypatch):
    """The state passes the minion's master; when it is reached through the uplink, it is probed
    too."""
    import socket  # pylint: disable=import-outside-toplevel

    from pyroute2 import netns as pr_netns  # pylint: disable=import-outside-toplevel

    from salt_kvm import bridge, bridge_probe  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(bridge_probe, "DEFAULT_TIMEOUT", 1.5)
    before = lan.dump()
    ret = bridge.bridge_present(
        None, "kvt-br0", netns=lan.host, master=("192.0.2.1", 4506), **UPLINK
    )
    assert ret["result"] is False and "no TCP connection to 192.0.2.1:4506" in ret["comment"]
    assert lan.dump() == before
    listener = pr_netns.create_socket(
        lan.lan, family=socket.AF_INET, socket_type=socket.SOCK_STREAM, flags=0
    )
    try:
        listener.bind(("192.0.2.1", 4506))
        listener.listen(4)
        ret = bridge.bridge_present(
            None, "kvt-br0", netns=lan.host, master=("192.0.2.1", 4506), **UPLINK
        )
        assert ret["result"] is True, ret["comment"]
    finally:
        listener.close()


# --- our lock around bridge changes ---------------------------------------------------------

_HOLDER = """
import sys
from salt_kvm import bridge
with bridge.change_lock(None, sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_held_bridge_lock_fails_clearly_and_changes_nothing(kvm_state, kvm, lan, monkeypatch):
    """Another salt-kvm process changing bridges in the namespace: wait, then fail naming it;
    nothing changes."""
    from salt_kvm import bridge  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(bridge, "LOCK_TIMEOUT", 1.0)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, lan.host],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = lan.dump()
        ret = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, **UPLINK)
        assert ret.result is False and ret.changes == {}
        assert f"another salt-kvm bridge change is running (pid {holder.pid})" in ret.comment
        with pytest.raises(
            CommandExecutionError,
            match=f"another salt-kvm bridge change is running \\(pid {holder.pid}\\)",
        ):
            kvm.bridge_create("kvt-brx", netns=lan.host, stp=False)
        # test=True only reads: it answers while the lock is held
        assert (
            kvm_state.bridge_present(name="kvt-br0", netns=lan.host, test=True, **UPLINK).result
            is None
        )
        assert lan.dump() == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    ret = kvm_state.bridge_present(name="kvt-br0", netns=lan.host, **UPLINK)
    assert ret.result is True and "uplink" in ret.changes, ret.comment
    assert kvm_state.bridge_present(name="kvt-br0", netns=lan.host, **UPLINK).changes == {}


def test_a_change_by_another_process_is_seen_by_a_session_with_an_older_dump(lan):
    """The lock's generation: a run whose memoised dump predates another process's change reads
    again."""
    from salt_kvm import bridge, conn  # pylint: disable=import-outside-toplevel

    lan.add_nic("eno2")
    session = conn.Session()
    spec = {"ports": ["eno2"], "stp": False, "forward_delay": 0}
    try:
        assert bridge.bridge_present(session, "kvt-bra", netns=lan.host, **spec)["changes"]
        assert bridge.bridge_present(session, "kvt-bra", netns=lan.host, **spec)["changes"] == {}
        other = conn.Session()
        # another salt-kvm process, in effect
        bridge.bridge_delete(other, "kvt-bra", netns=lan.host)
        other.close()
        ret = bridge.bridge_present(session, "kvt-bra", netns=lan.host, **spec)
        assert ret["result"] is True and "bridge" in ret["changes"], ret
        assert _ns_link(lan.host, "kvt-bra") is not None
    finally:
        session.close()


# --- one namespace dump per run (the memoised dump is patched, not reloaded) ---------------------


def _comparable(host):
    links = {}
    for name, link in host["links"].items():
        entry = dict(link)
        if entry["port"]:
            entry["port"] = {
                k: v for k, v in entry["port"].items() if k != "state"
            }  # STP port state moves on its own
        links[name] = entry
    addresses = sorted((a["ifname"], a["cidr"]) for a in host["addresses"] if a["scope"] == 0)
    routes = sorted(str(sorted(r.items())) for r in host["routes"] if r["proto"] != 2)
    return {"links": links, "addresses": addresses, "routes": routes}


def test_first_apply_of_many_bridges_dumps_the_namespace_once(lan, monkeypatch):
    """Each changed bridge patches the run's dump (its link, its ports, addresses/routes when they
    changed) instead of dropping it: one full dump per run, and the patched dump is what the kernel
    has."""
    from salt_kvm import bridge, conn  # pylint: disable=import-outside-toplevel
    from salt_kvm import bridge_netlink as nl  # pylint: disable=import-outside-toplevel

    lan.add_nic("eno2")
    lan.add_nic("eno3")
    loads = []
    real = nl.load
    monkeypatch.setattr(nl, "load", lambda netns=None: loads.append(netns) or real(netns))
    specs = {
        "kvt-br0": UPLINK,  # uplink migration: address and default route move
        "kvt-bra": {"ports": ["eno2"], "stp": False, "mtu": 1400},
        "kvt-brb": {
            "ports": [{"name": "eno3", "cost": 7}],
            "addresses": ["198.51.100.5/24"],
            "routes": [{"to": "203.0.113.0/24", "via": "198.51.100.1"}],
        },
    }
    session = conn.Session()
    try:
        for name, spec in specs.items():
            ret = bridge.bridge_present(session, name, netns=lan.host, **spec)
            assert ret["result"] is True and ret["changes"], ret
        assert len(loads) == 1, "a changed bridge made the run dump the namespace again"
        assert _comparable(session.cache[bridge._memo_key(lan.host)]) == _comparable(real(lan.host))  # pylint: disable=protected-access
        for name, spec in specs.items():
            ret = bridge.bridge_present(session, name, netns=lan.host, **spec)
            assert ret["result"] is True and ret["changes"] == {}, ret
        assert len(loads) == 1
    finally:
        session.close()


def test_default_routes_in_routes_and_ipv6_routes_without_metric_converge(kvm_state, kvm, lan):
    """``to: default`` / ``0.0.0.0/0`` / ``::/0`` in ``routes`` (a second default route, with a
    metric)
    and an IPv6 route without a metric (the kernel shows 1024) apply, re-apply as no-ops, and go
    away."""
    lan.add_nic("eno2")
    spec = {
        "ports": ["eno2"],
        "stp": False,
        "addresses": ["198.51.100.5/24", "2001:db8:5::5/64"],
        "gateway": "198.51.100.1",
        "routes": [
            {"to": "default", "via": "198.51.100.2", "metric": 500},
            {"to": "::/0", "via": "2001:db8:5::1", "metric": 700},
            {"to": "2001:db8:6::/64", "via": "2001:db8:5::1"},
        ],
        "probe": {"ping": "127.0.0.1", "timeout": 1},
    }
    ret = kvm_state.bridge_present(name="kvt-brd", netns=lan.host, **spec)
    assert ret.result is True, ret.comment
    routes = lan.dump()["routes"]
    assert ("None", 0, "198.51.100.2", "kvt-brd", 254) in routes and (
        "None",
        0,
        "198.51.100.1",
        "kvt-brd",
        254,
    ) in routes
    assert ("None", 0, "2001:db8:5::1", "kvt-brd", 254) in routes
    assert kvm_state.bridge_present(name="kvt-brd", netns=lan.host, **spec).changes == {}
    spec["routes"] = []
    ret = kvm_state.bridge_present(name="kvt-brd", netns=lan.host, **spec)
    assert ret.result is True and set(ret.changes) == {"routes"}, ret.comment
    routes = lan.dump()["routes"]
    assert ("None", 0, "198.51.100.1", "kvt-brd", 254) in routes, "the gateway went with the routes"
    assert not [r for r in routes if r[2] in ("198.51.100.2", "2001:db8:5::1")]
    assert kvm_state.bridge_present(name="kvt-brd", netns=lan.host, **spec).changes == {}
