"""The ``kvm`` outputter through the real ``salt-call``: ``--out=kvm`` prints
tables and trees for ``kvm.bridge_list``, ``kvm.pool_list``, ``kvm.volume_list``
and ``kvm.snapshot_tree``; ``--out=json`` still prints the plain data.

Real objects: a ``kvt-`` dir pool with two volumes (one backed by the other),
a shut-off tiny VM with a small snapshot tree, and a bridge with a port and an
address inside a throwaway network namespace.
"""

import os
import re

import pytest
from pyroute2 import NetNS

from salt_kvm import units
from tests.conftest import REPO
from tests.support import sandbox
from tests.support.saltcall import SaltCall


@pytest.fixture
def call(tmp_path):
    # PYTHONPATH: this checkout's salt_kvm, so its _output/kvm.py (the entry point
    # finds the checkout's loader directories), whatever copy is installed
    return SaltCall(tmp_path / "salt", env={"PYTHONPATH": str(REPO)})


def kvm_text(call, *args, **kwargs):
    code, text, err = call.run(*args, out="kvm", **kwargs)
    assert code == 0, (text, err)
    assert "\033[" not in text, "no colour when stdout is not a terminal"
    return text


def json_data(call, *args, **kwargs):
    code, text, err = call.run(*args, out="json", **kwargs)
    assert code == 0, (text, err)
    assert isinstance(text, (dict, list)), f"not JSON: {text!r}"
    return text


def row(text, first):
    """The columns (2+ spaces apart) of the line whose first column is ``first``."""
    for line in text.splitlines():
        cols = re.split(r"\s{2,}", line.strip())
        if cols[0] == first:
            return cols
    raise AssertionError(f"no line for {first!r} in:\n{text}")


SIZE = re.compile(r"^\d+(\.\d)?[KMGTP]?$")


def test_pool_list_and_volume_list_print_tables(call, conn, dir_pool):
    name, path = dir_pool
    base = os.path.join(path, "base.qcow2")
    sandbox.qemu_img("create", "-q", "-f", "qcow2", base, "1G")
    sandbox.qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base,
        "-F",
        "qcow2",
        os.path.join(path, "web01.qcow2"),
        "2G",
    )
    conn.storagePoolLookupByName(name).refresh(0)

    text = kvm_text(call, "kvm.pool_list")
    lines = text.splitlines()
    assert lines[0] == "local:"
    assert re.split(r"\s{2,}", lines[1].strip()) == [
        "POOL",
        "TYPE",
        "STATE",
        "AUTOSTART",
        "CAPACITY",
        "ALLOCATION",
        "AVAILABLE",
        "USED",
        "TARGET",
    ]
    cols = row(text, name)
    assert cols[:4] == [name, "dir", "running", "no"] and cols[-1] == path
    assert all(SIZE.match(c) for c in cols[4:7]), cols
    assert re.match(r"^\d+%$", cols[7])
    data = json_data(call, "kvm.pool_list")
    assert data[name]["type"] == "dir" and data[name]["target"] == path
    assert isinstance(data[name]["capacity"], int)

    text = kvm_text(call, "kvm.volume_list", name)
    assert row(text, "base.qcow2")[:5] == [
        "base.qcow2",
        "qcow2",
        "1G",
        row(text, "base.qcow2")[3],
        "-",
    ]
    web = row(text, "web01.qcow2")
    assert web[1:3] == ["qcow2", "2G"] and web[4:] == [
        "base.qcow2",
        os.path.join(path, "web01.qcow2"),
    ]
    data = json_data(call, "kvm.volume_list", name)
    assert data["web01.qcow2"]["capacity"] == 2 * 1024**3
    assert data["web01.qcow2"]["backing"] == base
    assert web[3] == units.format_size(data["web01.qcow2"]["allocation"])


def test_snapshot_tree_prints_a_tree(call, tiny_vm):
    dom, _disk = tiny_vm()
    vm = dom.name()
    assert kvm_text(call, "kvm.snapshot_tree", vm) == "local:\n    no snapshots\n"
    assert json_data(call, "kvm.snapshot_tree", vm) == []

    def snap(name):
        return dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>", 0)

    # created in one second, siblings are listed by name: one-upgrade before two-experiment
    first = snap("base")
    snap("one-upgrade")
    dom.revertToSnapshot(first, 0)
    snap("two-experiment")

    text = kvm_text(call, "kvm.snapshot_tree", vm)
    lines = text.splitlines()
    col = lines[1].index("KIND")
    assert [line[:col].rstrip() for line in lines[2:]] == [
        "    base",
        "    ├── one-upgrade",
        "    └── two-experiment",
    ]
    assert lines[-1].endswith("<- current")
    assert re.split(r"\s{2,}", lines[2][col:].strip())[:3] == ["internal", "shutoff", "no"]
    data = json_data(call, "kvm.snapshot_tree", vm)
    assert [c["name"] for c in data[0]["children"]] == ["one-upgrade", "two-experiment"]
    assert data[0]["children"][1]["current"] is True


def _bridge_in(ns_name, bridge, port, address):
    with NetNS(ns_name) as ns:
        ns.link("add", ifname=bridge, kind="bridge")
        idx = ns.link_lookup(ifname=bridge)[0]
        ns.link("set", index=ns.link_lookup(ifname=port)[0], master=idx)
        ip, plen = address.split("/")
        ns.addr("add", index=idx, address=ip, prefixlen=int(plen))
        ns.link("set", index=idx, state="up")


def test_bridge_list_prints_like_brctl_show(call, lan):
    lan.add_nic("kvt-nic1")
    _bridge_in(lan.host, "kvt-br0", "kvt-nic1", "198.51.100.1/24")

    text = kvm_text(call, "kvm.bridge_list", f"netns={lan.host}")
    assert re.split(r"\s{2,}", text.splitlines()[1].strip()) == [
        "BRIDGE",
        "ID",
        "STP",
        "PORTS",
        "ADDRESSES",
    ]
    cols = row(text, "kvt-br0")
    assert cols[0] == "kvt-br0" and re.match(r"^[0-9a-f]{4}\.[0-9a-f]{12}$", cols[1])
    assert cols[2:] == ["no", "kvt-nic1", "198.51.100.1/24"]
    data = json_data(call, "kvm.bridge_list", f"netns={lan.host}")
    assert data == [
        {
            "name": "kvt-br0",
            "id": cols[1],
            "stp": False,
            "ports": ["kvt-nic1"],
            "vms": {},
            "addresses": ["198.51.100.1/24"],
        }
    ]

    empty = sandbox.uid("o-")
    try:
        with NetNS(empty, flags=os.O_CREAT):
            pass
        assert kvm_text(call, "kvm.bridge_list", f"netns={empty}") == "local:\n    no bridges\n"
    finally:
        from pyroute2 import netns  # pylint: disable=import-outside-toplevel

        netns.remove(empty)


def test_other_returns_fall_back_to_salts_outputters(call):
    assert kvm_text(call, "grains.item", "os") == call.run("grains.item", "os", out="nested")[1]
    text = kvm_text(call, "state.single", "test.nop", "name=kvt-nop")
    assert "Succeeded: 1" in text and "Failed:    0" in text


# --- the *_show and *_dumpxml functions, and the minion header -----------------


def field(text, name):
    """The VALUE of ``FIELD VALUE`` line ``name``."""
    cols = row(text, name)
    return cols[1] if len(cols) > 1 else ""


def test_pool_show_and_volume_show_print_fields_under_the_minion(call, conn, tiny_vm, dir_pool):
    name, path = dir_pool
    base = os.path.join(path, "base.qcow2")
    sandbox.qemu_img("create", "-q", "-f", "qcow2", base, "1G")
    sandbox.qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base,
        "-F",
        "qcow2",
        os.path.join(path, "web01.qcow2"),
        "2G",
    )
    conn.storagePoolLookupByName(name).refresh(0)
    dom, _disk = tiny_vm(disk=base)

    text = kvm_text(call, "kvm.pool_show", name)
    lines = text.splitlines()
    assert lines[0] == "local:", "the minion header is kept"
    assert re.split(r"\s{2,}", lines[1].strip()) == ["FIELD", "VALUE"]
    assert not any(line.strip().startswith("local ") for line in lines[1:]), (
        "no minion id in a table"
    )
    assert (
        field(text, "name") == name
        and field(text, "type") == "dir"
        and field(text, "target") == path
    )
    assert SIZE.match(field(text, "capacity")) and field(text, "volumes") == "2"

    text = kvm_text(call, "kvm.volume_show", name, "base.qcow2")
    assert text.splitlines()[0] == "local:"
    assert field(text, "capacity") == "1G" and field(text, "format") == "qcow2"
    assert field(text, "used_by") == dom.name(), text
    assert field(text, "backing_of") == f"{name}/web01.qcow2", text
    data = json_data(call, "kvm.volume_show", name, "base.qcow2")
    assert (
        data["used_by"] == [dom.name()]
        and data["backing_of"] == [f"{name}/web01.qcow2"]
        and data["capacity"] == 1024**3
    )

    text = kvm_text(call, "kvm.volume_show", name, "web01.qcow2")
    assert field(text, "backing") == base and field(text, "capacity") == "2G"


def test_dumpxml_prints_libvirts_xml(call, dir_pool):
    name, path = dir_pool
    text = kvm_text(call, "kvm.pool_dumpxml", name)
    lines = text.splitlines()
    assert (
        lines[0] == "local:" and lines[1] == "    <pool type='dir'>" and lines[-1] == "    </pool>"
    )
    assert f"      <name>{name}</name>" in lines and f"<path>{path}</path>" in text


def test_network_list_prints_a_table(call, conn):
    net = sandbox.uid("o-")
    conn.networkDefineXML(f"<network><name>{net}</name><bridge name='{net}'/></network>")
    try:
        text = kvm_text(call, "kvm.network_list")
        lines = text.splitlines()
        assert lines[0] == "local:" and re.split(r"\s{2,}", lines[1].strip()) == [
            "NETWORK",
            "MODE",
            "BRIDGE",
            "ACTIVE",
            "AUTOSTART",
            "PERSISTENT",
        ]
        assert row(text, net) == [net, "isolated", net, "no", "no", "yes"]
    finally:
        sandbox.remove_named([net])
