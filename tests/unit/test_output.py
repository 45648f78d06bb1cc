"""The ``kvm`` outputter's text (salt_kvm.output): each function's data by its shape."""

import json
import re

import pytest

from salt_kvm import output

GIB = 1024**3

BRIDGES = [
    {"name": "br1", "id": "8000.0a0000000001", "stp": True, "ports": [], "addresses": []},
    {
        "name": "br0",
        "id": "8000.0a0000000000",
        "stp": False,
        "ports": ["eno1", {"name": "vnet3", "vm": "web01"}, {"name": "vnet4", "vm": None}],
        "addresses": ["192.0.2.10/24", "2001:db8::10/64"],
    },
]

POOLS = {
    "default": {
        "type": "dir",
        "state": "running",
        "active": True,
        "autostart": True,
        "capacity": 100 * GIB,
        "allocation": 25 * GIB,
        "available": 75 * GIB,
        "target": "/var/lib/libvirt/images",
    },
    "backup": {
        "type": "logical",
        "state": "inactive",
        "active": False,
        "autostart": False,
        "capacity": 0,
        "allocation": 0,
        "available": 0,
        "target": "/dev/vg_backup",
    },
}

VOLUMES = {
    "base.qcow2": {
        "name": "base.qcow2",
        "path": "/var/lib/libvirt/images/base.qcow2",
        "format": "qcow2",
        "capacity": 20 * GIB,
        "allocation": int(1.5 * GIB),
        "backing": None,
    },
    "web01.qcow2": {
        "name": "web01.qcow2",
        "path": "/var/lib/libvirt/images/web01.qcow2",
        "format": "qcow2",
        "capacity": 20 * GIB,
        "allocation": 196 * 1024,
        "backing": "/var/lib/libvirt/images/base.qcow2",
    },
    "seed.iso": {
        "name": "seed.iso",
        "path": "/var/lib/libvirt/images/seed.iso",
        "format": "raw",
        "capacity": 512,
        "allocation": 512,
        "backing": "/srv/images/other.img",
    },
}


def _snap(
    name,
    current=False,
    children=(),
    state="running",
    memory=True,
    kind="internal",
    created="2026-01-31T10:00:00Z",
):
    return {
        "name": name,
        "kind": kind,
        "state": state,
        "memory": memory,
        "created": created,
        "current": current,
        "children": list(children),
    }


TREE = [
    _snap(
        "base",
        state="shutoff",
        memory=False,
        created="2026-01-30T09:00:00Z",
        children=[
            _snap(
                "before-upgrade",
                children=[
                    _snap(
                        "after-upgrade",
                        current=True,
                        kind="external",
                        memory=False,
                        state="disk-snapshot",
                    )
                ],
            ),
            _snap("experiment"),
        ],
    ),
    _snap("orphan", created=None),
]


def _columns(line):
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.parametrize(
    "data,kind",
    [
        (BRIDGES, "bridge_list"),
        (POOLS, "pool_list"),
        (VOLUMES, "volume_list"),
        (TREE, "snapshot_tree"),
        ({"local": POOLS}, None),
        ("text", None),
        ([1, 2], None),
        ({"a": 1}, None),
    ],
)
def test_shape_recognises_each_function(data, kind):
    assert output.shape(data) == kind


def test_bridge_list_reads_like_brctl_show():
    lines = output.render(BRIDGES).splitlines()
    assert _columns(lines[0]) == ["BRIDGE", "ID", "STP", "PORTS", "ADDRESSES"]
    # sorted by name; one line per port and address, the bridge named once
    assert _columns(lines[1]) == ["br0", "8000.0a0000000000", "no", "eno1", "192.0.2.10/24"]
    assert _columns(lines[2]) == ["vnet3 (web01)", "2001:db8::10/64"]
    assert _columns(lines[3]) == ["vnet4"]
    assert _columns(lines[4]) == ["br1", "8000.0a0000000001", "yes", "-", "-"]
    assert len(lines) == 5
    # the ports column lines up
    col = lines[0].index("PORTS")
    assert [ln[col:].split()[0] for ln in lines[1:4]] == ["eno1", "vnet3", "vnet4"]


def test_pool_list_table_with_binary_sizes_and_use():
    lines = output.render(POOLS).splitlines()
    assert _columns(lines[0]) == [
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
    assert _columns(lines[1]) == [
        "backup",
        "logical",
        "inactive",
        "no",
        "-",
        "-",
        "-",
        "-",
        "/dev/vg_backup",
    ]
    assert _columns(lines[2]) == [
        "default",
        "dir",
        "running",
        "yes",
        "100G",
        "25G",
        "75G",
        "25%",
        "/var/lib/libvirt/images",
    ]
    # sizes are right-aligned under their header
    end = lines[0].index("CAPACITY") + len("CAPACITY")
    assert lines[2][:end].endswith("100G")


def test_volume_list_table():
    lines = output.render(VOLUMES).splitlines()
    assert _columns(lines[0]) == ["VOLUME", "FORMAT", "CAPACITY", "ALLOCATION", "BACKING", "PATH"]
    rows = {_columns(ln)[0]: _columns(ln) for ln in lines[1:]}
    assert rows["base.qcow2"] == [
        "base.qcow2",
        "qcow2",
        "20G",
        "1.5G",
        "-",
        "/var/lib/libvirt/images/base.qcow2",
    ]
    # a backing file beside the volume by its name, elsewhere by its path
    assert rows["web01.qcow2"][2:5] == ["20G", "196K", "base.qcow2"]
    assert rows["seed.iso"][2:5] == ["512", "512", "/srv/images/other.img"]
    assert [ln.split()[0] for ln in lines[1:]] == ["base.qcow2", "seed.iso", "web01.qcow2"]


def test_snapshot_tree_is_drawn_and_marks_the_current():
    lines = output.render(TREE).splitlines()
    assert _columns(lines[0]) == ["SNAPSHOT", "KIND", "STATE", "MEMORY", "CREATED (UTC)"]
    col = lines[0].index("KIND")
    names = [ln[:col].rstrip() for ln in lines[1:]]
    assert names == [
        "base",
        "├── before-upgrade",
        "│   └── after-upgrade",
        "└── experiment",
        "orphan",
    ]
    assert _columns(lines[1]) == ["base", "internal", "shutoff", "no", "2026-01-30 09:00:00"]
    assert _columns(lines[3][col:]) == [
        "external",
        "disk-snapshot",
        "no",
        "2026-01-31 10:00:00",
        "<- current",
    ]
    assert sum("<- current" in ln for ln in lines) == 1
    assert _columns(lines[5])[-1] == "-"  # no creation time known
    # the columns beside the tree line up
    assert {ln[col:].split()[0] for ln in lines[1:]} == {"internal", "external"}


@pytest.mark.parametrize(
    "fun,empty,text",
    [
        ("kvm.bridge_list", [], "no bridges"),
        ("kvm.snapshot_tree", [], "no snapshots"),
        ("kvm.pool_list", {}, "no storage pools"),
        ("kvm.volume_list", {}, "no volumes"),
    ],
)
def test_empty_returns_say_so(fun, empty, text):
    assert output.render({"local": empty}, fun=fun) == f"local:\n    {text}"


def test_empty_without_knowing_the_function_falls_back():
    seen = []
    assert output.render({"local": []}, fallback=lambda d: seen.append(d) or "nested") == "nested"
    assert seen == [{"local": []}]
    # a function not ours does not decide either
    assert output.render({"local": {}}, fun="test.ping", fallback=lambda d: "fb") == "fb"


def test_minions_each_get_their_block_and_errors_fall_back():
    data = {"hv1": POOLS, "hv2": "ERROR: libvirt is down", "local": TREE}
    text = output.render(data, fallback=lambda d: f"<fallback {json.dumps(d)}>")
    blocks = text.splitlines()
    assert blocks[0] == "hv1:"
    assert blocks[1].startswith("    POOL ")
    assert '<fallback {"hv2": "ERROR: libvirt is down"}>' in blocks
    start = blocks.index("local:")
    assert blocks[start + 2].startswith("    base ")
    assert all(line.startswith("    ") for line in blocks[1:4])


def test_anything_else_goes_to_the_fallback():
    seen = []
    data = {"local": {"kvm": {"hypervisor": "kvm"}}}
    assert output.render(data, fallback=lambda d: seen.append(d) or "nested text") == "nested text"
    assert seen == [data]
    # default fallback without Salt: JSON
    assert json.loads(output.render({"local": True})) == {"local": True}


def test_state_returns_are_recognised_for_highstate():
    states = {
        "local": {
            "kvm_|-kvm-pool-x_|-x_|-pool_present": {"result": True, "comment": "", "changes": {}}
        }
    }
    assert output.is_state_return(states)
    assert not output.is_state_return({"local": POOLS})
    assert not output.is_state_return({"local": "text"})
    assert not output.is_state_return({})


def test_no_colour_unless_asked():
    for data in (BRIDGES, POOLS, VOLUMES, TREE):
        assert "\033[" not in output.render({"local": data})
        coloured = output.render({"local": data}, color=True)
        assert "\033[" in coloured
        # colour changes nothing but the escapes: the columns still line up
        assert re.sub(r"\033\[[0-9;]*m", "", coloured) == output.render({"local": data})


def test_data_is_not_changed():
    import copy  # pylint: disable=import-outside-toplevel

    data = {"local": copy.deepcopy(TREE), "hv": copy.deepcopy(POOLS)}
    before = copy.deepcopy(data)
    output.render(data, color=True)
    assert data == before


def test_odd_values_do_not_break_the_table():
    pools = {
        "p": dict(POOLS["default"], capacity=None, allocation=None, available=None, target=None)
    }
    assert _columns(output.render(pools).splitlines()[1]) == [
        "p",
        "dir",
        "running",
        "yes",
        "-",
        "-",
        "-",
        "-",
        "-",
    ]
    vols = {"v": {"path": None, "format": None, "capacity": 0, "allocation": 0, "backing": None}}
    assert _columns(output.render(vols).splitlines()[1]) == ["v", "-", "0", "0", "-", "-"]


def _doc_blocks():
    """``{command: output}`` of the console blocks in docs/output.rst."""
    import pathlib  # pylint: disable=import-outside-toplevel
    import textwrap  # pylint: disable=import-outside-toplevel

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "output.rst").read_text()
    blocks = {}
    for block in text.split(".. code-block:: console\n")[1:]:
        body = []
        for line in block.splitlines()[1:]:
            if line and not line.startswith("    "):
                break
            body.append(line)
        lines = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
        blocks[lines[0]] = "\n".join(lines[1:])
    return blocks


def test_the_documented_output_is_what_the_documented_data_renders_to():
    blocks = _doc_blocks()
    data = json.loads(blocks["$ salt-call --out=json kvm.volume_list kvt-images-0d8c93"])
    assert (
        output.render(data, fun="kvm.volume_list")
        == blocks["$ salt-call --out=kvm kvm.volume_list kvt-images-0d8c93"]
    )


def test_bridge_list_names_the_vm_behind_each_tap_from_vms():
    text = "\n".join(
        output.bridge_lines(
            [
                {
                    "name": "br0",
                    "id": "8000.1",
                    "stp": False,
                    "ports": ["eno1", "vnet0"],
                    "vms": {"vnet0": "web01"},
                    "addresses": [],
                }
            ]
        )
    )
    assert "vnet0 (web01)" in text and "eno1 (" not in text


# --- the function decides: *_show, *_dumpxml, more lists ------------------------

VOLUME_SHOW = {
    "name": "web01.qcow2",
    "path": "/var/lib/libvirt/images/web01.qcow2",
    "format": "qcow2",
    "capacity": 20 * GIB,
    "allocation": 196 * 1024,
    "backing": "/var/lib/libvirt/images/base.qcow2",
    "pool": "default",
    "backing_chain": [{"path": "/var/lib/libvirt/images/base.qcow2", "format": "qcow2"}],
    "used_by": ["web01"],
    "backing_of": ["default/web02.qcow2", "default/web03.qcow2"],
}


def _field(lines, name):
    for line in lines:
        cols = _columns(line)
        if cols[0] == name:
            return cols[1:]
    raise AssertionError(f"no field {name} in {lines}")


def test_a_show_is_field_value_lines_under_the_minion_never_a_table_of_minions():
    pool = dict(POOLS["default"], name="default", volumes=3, source={})
    text = output.render({"hv1": pool}, fun="kvm.pool_show")
    lines = text.splitlines()
    assert lines[0] == "hv1:" and _columns(lines[1]) == ["FIELD", "VALUE"]
    assert all(not line.strip().startswith("hv1 ") for line in lines[1:]), (
        "the minion id is the header, not a row"
    )
    assert (
        _field(lines, "capacity") == ["100G"]
        and _field(lines, "available") == ["75G"]
        and _field(lines, "autostart") == ["yes"]
    )
    assert _field(lines, "source") == ["-"]
    text = output.render({"local": VOLUME_SHOW}, fun="kvm.volume_show")
    lines = text.splitlines()
    assert _field(lines, "used_by") == ["web01"]
    assert _field(lines, "backing_of") == ["default/web02.qcow2, default/web03.qcow2"]
    assert _field(lines, "capacity") == ["20G"]
    start = lines.index("    backing_chain:")
    assert _columns(lines[start + 1]) == ["PATH", "FORMAT"] and _columns(lines[start + 2]) == [
        "/var/lib/libvirt/images/base.qcow2",
        "qcow2",
    ]


def test_a_show_with_an_error_from_one_minion_falls_back_for_that_minion():
    text = output.render(
        {"hv1": VOLUME_SHOW, "hv2": "ERROR: volume 'x' does not exist"},
        fun="kvm.volume_show",
        fallback=lambda d: f"<fb {json.dumps(d)}>",
    )
    assert (
        text.splitlines()[0] == "hv1:"
        and '<fb {"hv2": "ERROR: volume \'x\' does not exist"}>' in text
    )


def test_dumpxml_prints_the_xml_as_it_is():
    xml = "<pool type='dir'>\n  <name>default</name>\n</pool>\n"
    assert (
        output.render({"local": xml}, fun="kvm.pool_dumpxml")
        == "local:\n    <pool type='dir'>\n      <name>default</name>\n    </pool>"
    )


def test_network_list_snapshot_list_leases_and_fdb_are_tables():
    nets = {
        "default": {
            "mode": "nat",
            "bridge": "virbr0",
            "active": True,
            "autostart": True,
            "persistent": True,
        },
        "lab": {
            "mode": "isolated",
            "bridge": None,
            "active": False,
            "autostart": False,
            "persistent": True,
        },
    }
    lines = output.render({"local": nets}, fun="kvm.network_list").splitlines()
    assert _columns(lines[1]) == ["NETWORK", "MODE", "BRIDGE", "ACTIVE", "AUTOSTART", "PERSISTENT"]
    assert _columns(lines[2]) == ["default", "nat", "virbr0", "yes", "yes", "yes"] and _columns(
        lines[3]
    ) == ["lab", "isolated", "-", "no", "no", "yes"]
    snaps = [
        {
            "name": "base",
            "kind": "internal",
            "state": "shutoff",
            "memory": False,
            "created": "2026-01-30T09:00:00Z",
            "parent": None,
            "current": False,
            "children": ["next"],
        },
        {
            "name": "next",
            "kind": "external",
            "state": "running",
            "memory": True,
            "created": "2026-01-31T09:00:00Z",
            "parent": "base",
            "current": True,
            "children": [],
        },
    ]
    lines = output.render({"local": snaps}, fun="kvm.snapshot_list").splitlines()
    assert _columns(lines[1])[:6] == [
        "SNAPSHOT",
        "KIND",
        "STATE",
        "MEMORY",
        "CREATED (UTC)",
        "PARENT",
    ]
    assert _columns(lines[3]) == [
        "next",
        "external",
        "running",
        "yes",
        "2026-01-31 09:00:00",
        "base",
        "<- current",
    ]
    leases = [
        {
            "mac": "52:54:00:00:00:01",
            "ip": "198.51.100.10",
            "prefix": 24,
            "hostname": "web01",
            "expiry": 1767225600,
        }
    ]
    lines = output.render({"local": leases}, fun="kvm.network_leases").splitlines()
    assert (
        _columns(lines[1]) == ["MAC", "IP", "PREFIX", "HOSTNAME", "EXPIRY"]
        and _columns(lines[2])[0] == "52:54:00:00:00:01"
    )
    fdb = [
        {
            "mac": "52:54:00:00:00:01",
            "port": "vnet0",
            "vlan": None,
            "kind": "learned",
            "vm": "web01",
        }
    ]
    lines = output.render({"local": fdb}, fun="kvm.bridge_fdb").splitlines()
    assert _columns(lines[1]) == ["MAC", "PORT", "VLAN", "KIND", "VM"] and _columns(lines[2]) == [
        "52:54:00:00:00:01",
        "vnet0",
        "-",
        "learned",
        "web01",
    ]
    for fun, text in (
        ("kvm.network_list", "no libvirt networks"),
        ("kvm.snapshot_list", "no snapshots"),
        ("kvm.network_leases", "no leases"),
        ("kvm.bridge_fdb", "no MAC addresses"),
    ):
        empty = {} if fun == "kvm.network_list" else []
        assert output.render({"local": empty}, fun=fun) == f"local:\n    {text}"


def test_a_list_function_known_by_name_keeps_the_minion_header():
    text = output.render({"hv1": POOLS}, fun="kvm.pool_list")
    assert text.splitlines()[0] == "hv1:" and _columns(text.splitlines()[1])[0] == "POOL"


def test_a_show_with_nested_records_gets_blocks_and_the_xml_last():
    bridge = {
        "name": "br0",
        "stp": False,
        "addresses": ["192.0.2.10/24"],
        "ports": [
            {"name": "eno1", "state": "forwarding", "vlans": [1, 100]},
            {"name": "vnet0", "state": "forwarding", "vm": "web01", "vlans": []},
        ],
        "memory": {"total": 4 * GIB, "free": GIB},
        "paths": {"a": "/a", "b": "/b", "c": "/c", "d": "/d"},
        "xml": "<bridge/>\n",
    }
    lines = output.render({"hv1": bridge}, fun="kvm.bridge_show").splitlines()
    assert _field(lines, "stp") == ["no"] and _field(lines, "addresses") == ["192.0.2.10/24"]
    assert _field(lines, "memory") == ["total=4G, free=1G"]
    ports = lines.index("    ports:")
    assert _columns(lines[ports + 1]) == ["NAME", "STATE", "VLANS", "VM"]
    assert _columns(lines[ports + 2]) == ["eno1", "forwarding", "1, 100", "-"] and _columns(
        lines[ports + 3]
    ) == ["vnet0", "forwarding", "-", "web01"]
    paths = lines.index("    paths:")
    assert _columns(lines[paths + 2]) == ["a", "/a"]
    assert lines[-2:] == ["    xml:", "        <bridge/>"]


def test_vm_list_is_a_table_with_a_line_per_disk_and_nic():
    vms = {
        "web01": {
            "state": "running",
            "autostart": True,
            "vcpus": 2,
            "memory": 2 * GIB,
            "disks": [
                {
                    "target": "vda",
                    "device": "disk",
                    "pool": "default",
                    "volume": "web01.qcow2",
                    "path": "/x",
                },
                {
                    "target": "sda",
                    "device": "cdrom",
                    "pool": None,
                    "volume": None,
                    "path": "/iso/seed.iso",
                },
            ],
            "nics": [
                {
                    "type": "bridge",
                    "bridge": "br0",
                    "network": None,
                    "mac": "52:54:00:00:00:01",
                    "ip": ["192.0.2.20"],
                }
            ],
        },
        "old": {
            "state": "shutoff",
            "autostart": False,
            "vcpus": 1,
            "memory": 512 * 1024**2,
            "disks": [],
            "nics": [],
        },
    }
    lines = output.render({"local": vms}, fun="kvm.vm_list").splitlines()
    assert _columns(lines[1]) == ["VM", "STATE", "AUTOSTART", "VCPUS", "MEMORY", "DISKS", "NICS"]
    assert _columns(lines[2]) == ["old", "shutoff", "no", "1", "512M", "-", "-"]
    assert _columns(lines[3]) == [
        "web01",
        "running",
        "yes",
        "2",
        "2G",
        "vda default/web01.qcow2",
        "br0 52:54:00:00:00:01 192.0.2.20",
    ]
    assert _columns(lines[4]) == ["sda /iso/seed.iso (cdrom)"]
    assert output.render({"local": {}}, fun="kvm.vm_list") == "local:\n    no VMs"
