"""``kvm.topology`` on real objects: a ``kvt-`` network namespace with a bridge
and a veth "NIC", a ``kvt-`` bridge in the root namespace with its own veth
NIC and the tap of a real tiny VM, a ``kvt-`` dir pool holding a base and an
overlay volume (the VM's disk), and two snapshots of the VM. The graph is
checked node by node and edge by edge, drawn for real with Graphviz, and
called once through the real ``salt-call``."""

import contextlib
import os
import pathlib
import shutil

import pytest
from lxml import etree
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import sandbox
from tests.support.saltcall import SaltCall

REPO = pathlib.Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (package graphviz)"
)


@pytest.fixture
def ns_bridge():
    """A netns holding bridge ``kvt-tbr0`` (192.0.2.10/24) whose port is the veth NIC ``eno1``."""
    from pyroute2 import NetNS, netns  # pylint: disable=import-outside-toplevel

    name = sandbox.uid("tn-")
    try:
        with NetNS(name, flags=os.O_CREAT) as ns:
            ns.link("add", ifname="eno1", kind="veth", peer="lan0")
            ns.link("add", ifname="kvt-tbr0", kind="bridge")
            br = ns.link_lookup(ifname="kvt-tbr0")[0]
            for ifname in ("eno1", "lan0"):
                idx = ns.link_lookup(ifname=ifname)[0]
                ns.link("set", index=idx, state="up")
            ns.link("set", index=ns.link_lookup(ifname="eno1")[0], master=br)
            ns.addr("add", index=br, address="192.0.2.10", prefixlen=24)
            ns.link("set", index=br, state="up")
        yield name
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)
        with contextlib.suppress(OSError):
            os.remove(f"/run/salt-kvm/bridge-{name}.lock")


@pytest.fixture
def root_bridge():
    """A ``kvt-`` bridge in the root namespace (where libvirtd puts VM taps) with a veth NIC."""
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    name, nic = sandbox.uid("br-"), sandbox.uid("n-")
    peer = sandbox.uid("p-")
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
            ipr.link("add", ifname=nic, kind="veth", peer=peer)
            br = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=ipr.link_lookup(ifname=nic)[0], master=br, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], state="up")
            ipr.link("set", index=br, state="up")
            yield name, nic
        finally:
            for link in (nic, name):
                with contextlib.suppress(Exception):
                    ipr.link("del", index=ipr.link_lookup(ifname=link)[0])


@pytest.fixture
def host(kvm, dir_pool, tiny_vm, root_bridge):
    """The objects above; the VM runs from the overlay and has snapshots s1 -> s2 (current)."""
    pool, _target = dir_pool
    bridge, nic = root_bridge
    kvm.volume_create(pool, "base.qcow2", "64M", format="qcow2")
    top = kvm.volume_create(pool, "top.qcow2", backing="base.qcow2")
    overlay = top["path"]
    mac = "52:54:00:7a:0b:01"
    dom, _disk = tiny_vm(start=True, bridge=bridge, mac=mac, disk=overlay)
    vm = dom.name()
    kvm.snapshot_create(vm, "s1")
    kvm.snapshot_create(vm, "s2")
    tap = etree.fromstring(dom.XMLDesc(0)).find("devices/interface/target").get("dev")
    return {"pool": pool, "bridge": bridge, "nic": nic, "vm": vm, "tap": tap, "mac": mac}


def edges(model):
    return {(e["from"], e["to"], e["kind"]): e for e in model["edges"]}


def nodes(model):
    return {n["id"]: n for n in model["nodes"]}


def mine(host):
    return [host["vm"], host["pool"], host["bridge"]]


def test_graph_of_real_objects(kvm, host):
    vm, pool, bridge, tap = host["vm"], host["pool"], host["bridge"], host["tap"]
    model = kvm.topology(format="json", names=mine(host))
    found, links = nodes(model), edges(model)
    assert found[f"vm:{vm}"]["kind"] == "vm" and found[f"vm:{vm}"]["state"] == "running"
    assert found[f"bridge:/{bridge}"]["kind"] == "bridge"
    assert found[f"nic:/{host['nic']}"]["details"][0] == "veth"
    assert found[f"tap:/{tap}"]["details"] == [host["mac"]]
    assert found[f"pool:{pool}"]["type"] == "dir"
    assert found[f"volume:{pool}/top.qcow2"]["format"] == "qcow2"
    assert found[f"snapshot:{vm}/s2"].get("current") is True
    assert "current" not in found[f"snapshot:{vm}/s1"]
    expected = [
        (f"nic:/{host['nic']}", f"bridge:/{bridge}", "port"),
        (f"bridge:/{bridge}", f"tap:/{tap}", "port"),
        (f"tap:/{tap}", f"vm:{vm}", "tap"),
        (f"pool:{pool}", f"volume:{pool}/base.qcow2", "volume"),
        (f"pool:{pool}", f"volume:{pool}/top.qcow2", "volume"),
        (f"volume:{pool}/top.qcow2", f"volume:{pool}/base.qcow2", "backing"),
        (f"volume:{pool}/top.qcow2", f"vm:{vm}", "disk"),
        (f"vm:{vm}", f"snapshot:{vm}/s1", "snapshot"),
        (f"snapshot:{vm}/s1", f"snapshot:{vm}/s2", "child"),
    ]
    for key in expected:
        assert key in links, (key, sorted(links))
    assert links[(f"volume:{pool}/top.qcow2", f"vm:{vm}", "disk")]["label"] == "vda"
    # the tap is drawn, so no second "vm -> bridge" line; only our objects are kept
    assert not [k for k in links if k[2] == "interface"]
    assert {n["kind"] for n in model["nodes"]} == {
        "nic",
        "bridge",
        "tap",
        "vm",
        "pool",
        "volume",
        "snapshot",
    }
    assert all(
        n["id"]
        .split(":", 1)[1]
        .startswith(tuple(mine(host)) + (f"/{bridge}", f"/{host['nic']}", f"/{tap}"))
        for n in model["nodes"]
    )

    dot = kvm.topology(names=mine(host))
    assert dot.startswith("digraph ") and "rankdir=LR" in dot
    assert f'  "tap:/{tap}" -> "vm:{vm}";' in dot
    assert (
        f'  "volume:{pool}/base.qcow2" -> "volume:{pool}/top.qcow2" '
        '[label="backing", style="dashed", dir=back];' in dot
    )
    assert f'"snapshot:{vm}/s2" [label="s2\\ninternal, running\\n' in dot and "(current)" in dot
    assert f'subgraph "cluster_pool:{pool}"' in dot


def test_whole_host_unfiltered(kvm, host):
    """Everything on the host (other runs' objects too): ours are in it."""
    model = kvm.topology(format="json")
    found = nodes(model)
    assert {
        f"vm:{host['vm']}",
        f"pool:{host['pool']}",
        f"bridge:/{host['bridge']}",
        f"tap:/{host['tap']}",
    } <= set(found)


def test_netns_bridge_and_libvirt_taps(kvm, host, ns_bridge):
    """With netns: the namespace's bridge and NIC, and the VM's bridge and tap as libvirt reports
    them."""
    vm, bridge, tap, ns = host["vm"], host["bridge"], host["tap"], ns_bridge
    model = kvm.topology(format="json", netns=ns, names=["kvt-tbr0", bridge, vm])
    found, links = nodes(model), edges(model)
    assert found[f"bridge:{ns}/kvt-tbr0"]["details"] == ["192.0.2.10/24"]
    assert found[f"bridge:{ns}/kvt-tbr0"]["cluster"] == "net"
    assert found[f"nic:{ns}/eno1"]["details"] == ["veth"]
    assert (f"nic:{ns}/eno1", f"bridge:{ns}/kvt-tbr0", "port") in links
    assert found[f"bridge:/{bridge}"]["cluster"] == "root"
    assert (f"bridge:/{bridge}", f"tap:/{tap}", "port") in links
    assert (f"tap:/{tap}", f"vm:{vm}", "tap") in links
    # the root namespace's NIC is not read: only the namespace's kernel links are
    assert f"nic:/{host['nic']}" not in found
    labels = {c["id"]: c["label"] for c in model["clusters"]}
    assert labels["net"] == f"network namespace {ns}"
    assert model["title"].endswith(f"(network namespace {ns})")


def test_parts_and_stopped_vm(kvm, host, conn):
    vm, pool = host["vm"], host["pool"]
    model = kvm.topology(format="json", parts="storage,vms", names=mine(host))
    assert {n["kind"] for n in model["nodes"]} == {"vm", "pool", "volume"}
    assert (f"volume:{pool}/top.qcow2", f"vm:{vm}", "disk") in edges(model)
    conn.lookupByName(vm).destroy()
    model = kvm.topology(format="json", parts=["bridges", "vms"], names=mine(host))
    found, links = nodes(model), edges(model)
    assert found[f"vm:{vm}"]["state"] == "shut off" and found[f"vm:{vm}"].get("inactive") is True
    assert f"tap:/{host['tap']}" not in found
    # a shut-off VM has no tap: its interface is drawn to the bridge it will join
    assert links[(f"vm:{vm}", f"bridge:/{host['bridge']}", "interface")]["label"] == host["mac"]
    model = kvm.topology(format="json", parts="snapshots", names=mine(host))
    assert {n["kind"] for n in model["nodes"]} == {"vm", "snapshot"}, (
        "snapshot trees come with their VMs"
    )


@needs_dot
def test_svg_png_dot_json_files(kvm, host, tmp_path):
    model = kvm.topology(format="json", names=mine(host))
    svg = tmp_path / "host.svg"
    ret = kvm.topology(format="svg", path=str(svg), names=mine(host))
    assert ret == {
        "path": str(svg),
        "format": "svg",
        "nodes": len(model["nodes"]),
        "edges": len(model["edges"]),
    }
    root = etree.parse(str(svg)).getroot()
    assert root.tag == f"{SVG}svg"
    titles = {t.text for t in root.iter(f"{SVG}title")}
    assert f"vm:{host['vm']}" in titles and f"volume:{host['pool']}/top.qcow2" in titles
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {host["vm"], "top.qcow2", "base.qcow2", "s1", "s2", "(current)"} <= texts

    png = tmp_path / "host.png"
    assert kvm.topology(format="PNG", path=str(png), names=mine(host))["format"] == "png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert oct(png.stat().st_mode & 0o777) == "0o644"

    dot = tmp_path / "host.dot"
    assert kvm.topology(path=str(dot), names=mine(host))["format"] == "dot"
    assert dot.read_text() == kvm.topology(names=mine(host))
    js = tmp_path / "host.json"
    kvm.topology(format="json", path=str(js), names=mine(host))
    import json  # pylint: disable=import-outside-toplevel

    assert json.loads(js.read_text())["nodes"] == model["nodes"]
    assert sorted(os.listdir(tmp_path)) == ["host.dot", "host.json", "host.png", "host.svg"], (
        "no temporary file left"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "svg"}, r"^path: is required with format=svg"),
        ({"format": "png", "path": "host.png"}, r"^path: 'host.png' is not an absolute path"),
        (
            {"format": "gif", "path": "/tmp/x.gif"},
            r"^format: 'gif' is not one of dot, json, svg, png",
        ),
        (
            {"format": "svg", "path": "/nonexistent-kvt/x.svg"},
            r"^path: directory '/nonexistent-kvt' does not exist",
        ),
        ({"parts": "storage,disks"}, r"^parts: 'disks' is not one of"),
        (
            {"netns": "kvt-no-such-ns-0"},
            r"^netns: network namespace 'kvt-no-such-ns-0' does not exist",
        ),
    ],
)
def test_bad_input(kvm, kwargs, message):
    with pytest.raises(SaltInvocationError, match=message):
        kvm.topology(**kwargs)


def test_missing_graphviz_is_named(kvm, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without dot, as on a host without graphviz
    with pytest.raises(
        CommandExecutionError, match=r"'dot' command is not installed: install the package graphviz"
    ):
        kvm.topology(format="svg", path=str(tmp_path / "x.svg"))
    assert not (tmp_path / "x.svg").exists()


@needs_dot
def test_through_salt_call(host, tmp_path):
    call = SaltCall(tmp_path / "salt", env={"PYTHONPATH": str(REPO)})
    svg = tmp_path / "host.svg"
    rc, data, err = call.run(
        "kvm.topology", "format=svg", f"path={svg}", f"names={','.join(mine(host))}"
    )
    assert rc == 0, (data, err)
    assert (
        data["path"] == str(svg)
        and data["format"] == "svg"
        and data["nodes"] >= 9
        and data["edges"] >= 9
    )
    assert etree.parse(str(svg)).getroot().tag == f"{SVG}svg"
    rc, data, err = call.run("kvm.topology", "format=json", f"names={host['vm']}")
    assert rc == 0, (data, err)
    assert f"vm:{host['vm']}" in {n["id"] for n in data["nodes"]}
    rc, out, err = call.run("kvm.topology", "format=svg", out="txt")
    assert rc != 0 and "path: is required with format=svg" in out + err
