"""``bridge_netlink.load`` reads a namespace with its own small netlink reader
(no pyroute2): it must give exactly what the same dump through pyroute2 gives,
on a real namespace with a bridge, ports, addresses and routes."""

import json
import pathlib
import sys

import pytest

from salt_kvm import bridge_netlink as nl
from salt_kvm.errors import KvmError


def _pyroute2_dump(netns):
    with nl.netlink(netns) as ipr:
        return nl.dump(ipr)


def _same(a, b):
    return json.loads(json.dumps(a, sort_keys=True)) == json.loads(json.dumps(b, sort_keys=True))


def test_reader_dump_equals_the_pyroute2_dump(lan):
    from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

    lan.add_nic("eno2")
    with NetNS(lan.host) as ns:
        ns.link(
            "add",
            ifname="kvt-br0",
            kind="bridge",
            br_forward_delay=400,
            br_priority=4096,
            br_ageing_time=12345,
        )
        br = ns.link_lookup(ifname="kvt-br0")[0]
        eno2 = ns.link_lookup(ifname="eno2")[0]
        ns.link("set", index=eno2, master=br)
        ns.brport("set", index=eno2, cost=7, priority=5, mode=1)
        ns.link("set", index=br, state="up", address="02:00:00:aa:bb:cc", mtu=1400)
        ns.addr("add", index=br, address="198.51.100.5", prefixlen=24, broadcast="198.51.100.255")
        ns.addr("add", index=br, address="2001:db8::5", prefixlen=64)
        ns.route("add", dst="203.0.113.0/24", gateway="198.51.100.1", priority=50)
        ns.route("add", dst="2001:db8:1::/48", gateway="2001:db8::1", oif=br)
        ns.route(
            "add", dst="203.0.113.128/25", gateway="198.51.100.1", table=100
        )  # not the main table
    mine, theirs = nl.load(lan.host), _pyroute2_dump(lan.host)
    assert _same(mine, theirs)
    assert (
        mine["links"]["eno2"]["master"] == "kvt-br0" and mine["links"]["eno2"]["port"]["cost"] == 7
    )
    assert mine["links"]["kvt-br0"]["bridge"]["forward_delay"] == 4
    assert {r["dst"] for r in mine["routes"]} >= {"default", "203.0.113.0/24", "2001:db8:1::/48"}
    assert "203.0.113.128/25" not in {r["dst"] for r in mine["routes"]}


def test_reader_does_not_import_pyroute2(lan):
    import subprocess  # pylint: disable=import-outside-toplevel

    code = (
        f"import sys; from salt_kvm import bridge_netlink as nl; h = nl.load({lan.host!r}); "
        "print(len(h['links']), 'pyroute2' in sys.modules)"
    )
    repo = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=repo,
    ).stdout.split()
    assert out == ["2", "False"]  # lo and eno1, read without importing pyroute2


def test_get_link_by_name(lan):
    with nl.reader(lan.host) as reader:
        eno1 = reader.get_link("eno1")
        dumped = {link.get_attr("IFLA_IFNAME"): link["index"] for link in reader.get_links()}
        assert eno1.get_attr("IFLA_IFNAME") == "eno1" and eno1["index"] == dumped["eno1"]
        assert reader.get_link("kvt-nothere") is None


def test_missing_namespace_is_one_clear_error():
    with pytest.raises(
        KvmError, match=r"cannot open netlink in network namespace 'kvt-no-such-ns'"
    ):
        nl.load("kvt-no-such-ns")
