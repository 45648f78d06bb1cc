"""The topology graph without a host: the model, DOT rendering (escaping,
clusters, shapes, stable order) and the argument checks of ``kvm.topology``."""

import json
import random
import shutil
import subprocess

import pytest

from salt_kvm import topology
from salt_kvm.errors import InvalidInput


def sample_graph():
    """A small host: eno1 -> br0 -> vnet0 -> web01, a NAT network, a pool with a
    backing chain used by web01, and two snapshots (the second current)."""
    g = topology.Graph("hv1")
    net = g.cluster("net", "host network")
    g.node("nic:/eno1", "nic", "eno1", cluster=net, details=["veth"])
    g.node("bridge:/br0", "bridge", "br0", cluster=net, details=["192.0.2.10/24"])
    g.node("tap:/vnet0", "tap", "vnet0", cluster=net, details=["52:54:00:00:00:01"])
    g.edge("nic:/eno1", "bridge:/br0", "port")
    g.edge("bridge:/br0", "tap:/vnet0", "port")
    g.edge("tap:/vnet0", "vm:web01", "tap")
    lv = g.cluster("libvirt", "libvirt networks")
    g.node(
        "network:lab",
        "network",
        "lab",
        cluster=lv,
        details=["nat", "198.51.100.1/24"],
        inactive=True,
    )
    g.edge("network:lab", "bridge:/virbr1", "bridge")  # the bridge is not drawn: dropped
    vms = g.cluster("vms", "VMs")
    g.node("vm:web01", "vm", "web01", cluster=vms, details=["running"])
    g.edge("vm:web01", "network:lab", "interface", label="52:54:00:00:00:02")
    storage = g.cluster("storage", "storage")
    pool = g.cluster("pool:images", "pool images", parent=storage)
    g.node("pool:images", "pool", "images", cluster=pool, details=["dir"])
    g.node("volume:images/base.qcow2", "volume", "base.qcow2", cluster=pool)
    g.node("volume:images/web01.qcow2", "volume", "web01.qcow2", cluster=pool)
    g.edge("pool:images", "volume:images/base.qcow2", "volume")
    g.edge("pool:images", "volume:images/web01.qcow2", "volume")
    g.edge("volume:images/web01.qcow2", "volume:images/base.qcow2", "backing")
    g.edge("volume:images/web01.qcow2", "vm:web01", "disk", label="vda")
    snaps = g.cluster("snapshots:web01", "snapshots of web01")
    g.node("snapshot:web01/s1", "snapshot", "s1", cluster=snaps, details=["internal"])
    g.node("snapshot:web01/s2", "snapshot", "s2", cluster=snaps, details=["internal"], current=True)
    g.edge("vm:web01", "snapshot:web01/s1", "snapshot")
    g.edge("snapshot:web01/s1", "snapshot:web01/s2", "child")
    return g


# --- the model ------------------------------------------------------------------


def test_model_drops_dangling_edges_and_sorts():
    model = sample_graph().as_dict()
    ids = [n["id"] for n in model["nodes"]]
    assert ids == sorted(ids)
    assert all(e["to"] != "bridge:/virbr1" for e in model["edges"])
    keys = [(e["from"], e["to"], e["kind"]) for e in model["edges"]]
    assert keys == sorted(keys)
    assert ("volume:images/web01.qcow2", "volume:images/base.qcow2", "backing") in keys
    json.dumps(model)  # plain data


def test_model_clusters_in_area_order_with_parents():
    model = sample_graph().as_dict()
    assert [c["id"] for c in model["clusters"]] == [
        "net",
        "libvirt",
        "vms",
        "snapshots:web01",
        "storage",
        "pool:images",
    ]
    assert {c["id"]: c["parent"] for c in model["clusters"]}["pool:images"] == "storage"


def test_node_is_merged_not_replaced():
    g = topology.Graph()
    g.node("bridge:/br0", "bridge", "br0", cluster="net", details=["192.0.2.10/24"], mtu=1500)
    g.node(
        "bridge:/br0",
        "bridge",
        "other",
        cluster="root",
        details=["192.0.2.10/24", "STP"],
        mtu=9000,
        mac="52:54:00:aa:bb:cc",
    )
    node = g.as_dict()["nodes"][0]
    assert node["name"] == "br0" and node["cluster"] == "net"
    assert node["details"] == ["192.0.2.10/24", "STP"]
    assert node["mtu"] == 1500 and node["mac"] == "52:54:00:aa:bb:cc"


def test_unused_clusters_are_left_out():
    g = topology.Graph()
    g.cluster("storage", "storage")
    g.cluster("vms", "VMs")
    g.node("vm:a", "vm", "a", cluster="vms")
    assert [c["id"] for c in g.as_dict()["clusters"]] == ["vms"]


# --- DOT -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, quoted",
    [
        ("br0", '"br0"'),
        ('we"ird', '"we\\"ird"'),
        ("back\\slash", '"back\\\\slash"'),
        ("trailing\\", '"trailing\\\\"'),
        ("two\nlines", '"two\\nlines"'),
        ("cr\r\nlf", '"cr\\nlf"'),
        ("\\N and \\l", '"\\\\N and \\\\l"'),
        ("ünïcode", '"ünïcode"'),
    ],
)
def test_quote(text, quoted):
    assert topology.quote(text) == quoted


def test_dot_layout_shapes_and_clusters():
    dot = topology.render_dot(sample_graph().as_dict())
    assert dot.startswith('digraph "hv1" {\n')
    assert "rankdir=LR" in dot and 'label="hv1"' in dot
    assert dot.rstrip().endswith("}")
    assert 'subgraph "cluster_pool:images" {' in dot
    # pools nest inside storage
    assert dot.index('subgraph "cluster_storage"') < dot.index('subgraph "cluster_pool:images"')
    # areas in order: host network, libvirt networks, VMs, snapshots, storage
    order = [
        dot.index(f'subgraph "cluster_{c}"')
        for c in ("net", "libvirt", "vms", "snapshots:web01", "storage")
    ]
    assert order == sorted(order)
    lines = {
        line.strip().split(" [", 1)[0]: line for line in dot.splitlines() if " [label=" in line
    }
    assert 'shape="cylinder"' in lines['"pool:images"']
    assert 'shape="box3d"' in lines['"vm:web01"']
    assert 'shape="octagon"' in lines['"network:lab"'] and "dashed" in lines['"network:lab"']
    assert (
        'label="s2\\ninternal\\n(current)"' in lines['"snapshot:web01/s2"']
        and 'penwidth="2"' in lines['"snapshot:web01/s2"']
    )
    assert "penwidth" not in lines['"snapshot:web01/s1"']
    assert 'label="br0\\n192.0.2.10/24"' in lines['"bridge:/br0"']


def test_dot_edges():
    dot = topology.render_dot(sample_graph().as_dict())
    assert '  "nic:/eno1" -> "bridge:/br0";' in dot
    assert '  "bridge:/br0" -> "tap:/vnet0";' in dot
    assert '  "tap:/vnet0" -> "vm:web01";' in dot
    assert '  "volume:images/web01.qcow2" -> "vm:web01" [label="vda"];' in dot
    assert '  "snapshot:web01/s1" -> "snapshot:web01/s2";' in dot
    # drawn with their ends swapped so the picture flows left to right, arrow kept
    assert (
        '  "volume:images/base.qcow2" -> "volume:images/web01.qcow2" '
        '[label="backing", style="dashed", dir=back];' in dot
    )
    assert (
        '  "network:lab" -> "vm:web01" [label="52:54:00:00:00:02", style="dashed", dir=back];'
        in dot
    )
    assert "virbr1" not in dot


def test_dot_is_stable_whatever_the_input_order():
    model = sample_graph().as_dict()
    expected = topology.render_dot(model)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = dict(model)
        for key in ("nodes", "edges", "clusters"):
            shuffled[key] = rng.sample(model[key], len(model[key]))
        assert topology.render_dot(shuffled) == expected


def test_dot_of_an_empty_host():
    dot = topology.render_dot(topology.Graph().as_dict())
    assert dot.startswith('digraph "salt-kvm" {') and "->" not in dot and "subgraph" not in dot


def test_node_in_unknown_cluster_is_drawn_at_the_top():
    model = {
        "nodes": [{"id": "vm:a", "kind": "vm", "name": "a", "cluster": "nowhere"}],
        "edges": [],
        "clusters": [],
    }
    assert '\n  "vm:a" [label="a"' in topology.render_dot(model)


NASTY = [
    'q"uote',
    "back\\slash",
    "end\\",
    "new\nline",
    "\\N\\G\\l",
    "{brace};",
    "-> edge",
    "<html>",
    "sp ace",
    "ünï",
]


def test_every_name_survives_graphviz():
    """Graphviz itself reads the names back exactly (ids and labels)."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (package graphviz)")
    g = topology.Graph('host "x"')
    c = g.cluster("vms", 'VMs "all"\\')
    for i, name in enumerate(NASTY):
        g.node(f"vm:{name}", "vm", name, cluster=c, details=[f"d{i}\\"])
    for a, b in zip(NASTY, NASTY[1:]):
        g.edge(f"vm:{a}", f"vm:{b}", "child")
    dot = topology.render_dot(g.as_dict())
    proc = subprocess.run(
        ["dot", "-Tjson"], input=dot, capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(proc.stdout)
    # every quoted id was read whole (DOT itself only unescapes \" in an id)
    read = {o["name"] for o in out["objects"] if "nodes" not in o}
    assert read == {topology.quote(f"vm:{name}")[1:-1].replace('\\"', '"') for name in NASTY}
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    from lxml import etree  # pylint: disable=import-outside-toplevel

    texts = [
        "".join(t.itertext())
        for t in etree.fromstring(svg.encode()).iter("{http://www.w3.org/2000/svg}text")
    ]
    for name in NASTY:
        for line in name.split("\n"):
            assert line in texts, (line, texts)
    assert 'host "x"' in texts and 'VMs "all"\\' in texts
    assert len(out["edges"]) == len(NASTY) - 1


# --- arguments -----------------------------------------------------------------------


def test_parts():
    assert topology.parse_parts(None) == set(topology.PARTS)
    assert topology.parse_parts("all") == set(topology.PARTS)
    assert topology.parse_parts("bridges, storage") == {"bridges", "storage"}
    assert topology.parse_parts(["vms"]) == {"vms"}
    with pytest.raises(InvalidInput, match=r"^parts: 'disks' is not one of bridges, networks"):
        topology.parse_parts("storage,disks")
    with pytest.raises(InvalidInput, match=r"^parts: 5 is not a list"):
        topology.parse_parts(5)
    with pytest.raises(InvalidInput, match=r"^parts: is empty"):
        topology.parse_parts(",")


@pytest.mark.parametrize(
    "fmt, path, message",
    [
        ("gif", None, r"^format: 'gif' is not one of dot, json, svg, png"),
        (None, None, r"^format: None is not one of"),
        ("svg", None, r"^path: is required with format=svg"),
        ("png", "", r"^path: is required with format=png"),
        ("svg", "topology.svg", r"^path: 'topology.svg' is not an absolute path"),
        ("dot", "/nonexistent-kvt/x.dot", r"^path: directory '/nonexistent-kvt' does not exist"),
        ("svg", "/tmp", r"^path: '/tmp' is a directory"),
        ("png", 5, r"^path: 5 is not an absolute path"),
    ],
)
def test_bad_output_arguments(fmt, path, message):
    with pytest.raises(InvalidInput, match=message):
        topology.check_output(fmt, path)


def test_good_output_arguments(tmp_path):
    assert topology.check_output("dot", None) == "dot"
    assert topology.check_output("JSON", None) == "json"
    assert topology.check_output("SVG", str(tmp_path / "a.svg")) == "svg"


def test_netns_argument():
    with pytest.raises(InvalidInput, match=r"^netns: 'a/b' is not a network namespace name"):
        topology.build(None, netns="a/b")
    with pytest.raises(
        InvalidInput, match=r"^netns: network namespace 'kvt-no-such-ns-0' does not exist"
    ):
        topology.build(None, netns="kvt-no-such-ns-0")


def test_missing_dot_names_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent-kvt")
    with pytest.raises(topology.KvmError, match=r"install the package graphviz"):
        topology.dot_command()


def test_vlan_labels():
    assert topology._vlans(None) is None  # pylint: disable=protected-access
    vlans = {"pvid": 10, "untagged": [10], "tagged": [20, 30]}
    assert topology._vlans(vlans) == "VLAN pvid 10; untagged 10; tagged 20,30"  # pylint: disable=protected-access
    assert topology._vlans({"pvid": None, "untagged": [], "tagged": []}) is None  # pylint: disable=protected-access
