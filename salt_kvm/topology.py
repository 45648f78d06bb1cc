"""A picture of the host: ``kvm.topology`` as a graph, in Graphviz DOT, JSON, SVG or PNG.

:func:`build` reads what the other areas already read and returns a graph
model (plain data, JSON-serialisable):

* **bridges** (:mod:`salt_kvm.bridge`, one netlink dump of ``netns``): the
  NICs that are bridge ports (``nic -> bridge``; a VLAN sub-interface hangs off
  its parent), the taps on each bridge and the VM behind each tap
  (``bridge -> tap -> vm``). Taps of running VMs are also derived from
  libvirt's domain XML, so with ``netns`` (where the host's bridges live in a
  namespace but libvirtd's taps land in the root one) the VMs' bridges still
  show, in a cluster of their own;
* **networks** (:mod:`salt_kvm.network`): each libvirt network and its bridge
  (``network -> bridge``); a VM interface on a network whose tap is not shown
  (the VM is shut off) is drawn ``vm -> network``;
* **storage** (:mod:`salt_kvm.storage`, :mod:`salt_kvm.storage_volumes`):
  pools and their volumes (``pool -> volume``), backing files
  (``volume -> backing volume``, also for images outside any pool) and the
  disks of VMs (``volume -> vm``);
* **vms**: every VM (running or not);
* **snapshots** (:mod:`salt_kvm.snapshot`): each VM's snapshot tree
  (``vm -> root snapshot -> child``), the current snapshot marked.

``parts`` picks areas; ``names`` (glob patterns) keeps only the bridges,
networks, pools and VMs whose names match (a kept network keeps its bridge;
ports, taps, volumes, images and snapshots go with their owner). An edge is
kept only when both of its ends are.

:func:`render_dot` turns a model into DOT text: a pure function (rankdir LR,
one shape per kind, one cluster per area, every name escaped, stable order).
:func:`topology` is what ``kvm.topology`` runs: DOT, JSON, or an SVG/PNG file
written with Graphviz's ``dot``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import shutil
import socket
import subprocess  # nosec B404  # fixed argument lists, never a shell
import tempfile
from typing import Any, Iterable, Optional, Union

from salt_kvm import bridge as bridge_mod
from salt_kvm import bridge_netlink as nl
from salt_kvm import network as network_mod
from salt_kvm import snapshot as snapshot_mod
from salt_kvm import storage as storage_mod
from salt_kvm import storage_volumes as volumes_mod
from salt_kvm import units
from salt_kvm.conn import libvirt_caught, libvirt_errors
from salt_kvm.errors import InvalidInput, KvmError
from salt_kvm.xml import domain as dxml
from salt_kvm.xml import network as netxml
from salt_kvm.xml import storage as sxml
from salt_kvm.xml.base import parse

log = logging.getLogger(__name__)

PARTS = ("bridges", "networks", "storage", "vms", "snapshots")
FORMATS = ("dot", "json", "svg", "png")
#: formats Graphviz renders to a file
IMAGE_FORMATS = ("svg", "png")
DOT_TIMEOUT = 120
GRAPHVIZ_PACKAGE = "graphviz"

_DOMAIN_STATES = {
    0: "no state",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutting down",
    5: "shut off",
    6: "crashed",
    7: "suspended",
}

#: cluster ids (their first part) in the order they are drawn
CLUSTER_ORDER = ("net", "root", "libvirt", "vms", "snapshots", "storage", "pool", "images")

#: how each kind of node is drawn
STYLES = {
    "nic": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe4f0"},
    "bridge": {"shape": "box", "style": "filled,bold", "fillcolor": "#a9c8eb"},
    "tap": {"shape": "ellipse", "style": "filled", "fillcolor": "#eef3f9", "fontsize": "10"},
    "network": {"shape": "octagon", "style": "filled", "fillcolor": "#cfe8c9"},
    "vm": {"shape": "box3d", "style": "filled", "fillcolor": "#fde3a7"},
    "pool": {"shape": "cylinder", "style": "filled", "fillcolor": "#ddd2f0"},
    "volume": {"shape": "note", "style": "filled", "fillcolor": "#f4effb"},
    "image": {"shape": "note", "style": "filled", "fillcolor": "#ffffff"},
    "snapshot": {"shape": "ellipse", "style": "filled", "fillcolor": "#f3f3f3", "fontsize": "10"},
}
#: how the current snapshot differs
CURRENT_STYLE = {"fillcolor": "#ffd27f", "penwidth": "2"}
#: edges drawn with their ends swapped (``dir=back``) so the picture flows left to right:
#: a backing file sits left of its overlay, a network left of the VMs on it
REVERSED = ("backing", "interface")
EDGE_STYLES = {
    "backing": {"style": "dashed", "label": "backing"},
    "interface": {"style": "dashed"},
    "vlan": {"style": "dotted"},
}


# --- the model -------------------------------------------------------------------


class Graph:
    """Nodes, edges and clusters; :meth:`as_dict` is the model :func:`render_dot` draws."""

    def __init__(self, title: Optional[str] = None) -> None:
        self.title = title
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any]] = {}

    def cluster(self, cid: str, label: str, *, parent: Optional[str] = None) -> str:
        """Add cluster ``cid`` (drawn inside ``parent``); the first label stays."""
        self.clusters.setdefault(cid, {"id": cid, "label": label, "parent": parent})
        return cid

    def node(
        self,
        nid: str,
        kind: str,
        name: Any,
        *,
        cluster: Optional[str] = None,
        details: Iterable[Any] = (),
        **data: Any,
    ) -> str:
        """Add node ``nid`` (or add details/data to it: the first cluster and name stay)."""
        node = self.nodes.get(nid)
        if node is None:
            node = self.nodes[nid] = {
                "id": nid,
                "kind": kind,
                "name": name,
                "cluster": cluster,
                "details": [],
            }
        for line in details:
            if line and line not in node["details"]:
                node["details"].append(line)
        for key, value in data.items():
            if value is not None:
                node.setdefault(key, value)
        return nid

    def edge(
        self, src: str, dst: str, kind: str, *, label: Optional[str] = None
    ) -> tuple[str, str, str]:
        """Add an edge ``src`` -> ``dst`` of ``kind`` (the first label stays)."""
        key = (src, dst, kind)
        if key not in self.edges:
            self.edges[key] = {"from": src, "to": dst, "kind": kind, "label": label}
        return key

    def as_dict(self) -> dict[str, Any]:
        """``{title, clusters, nodes, edges}``: sorted; edges whose ends are missing are
        dropped."""
        used = {n["cluster"] for n in self.nodes.values()}
        clusters: dict[str, dict[str, Any]] = {}
        for cid in sorted(used - {None}):
            while cid in self.clusters and cid not in clusters:  # a cluster's parents are drawn too
                clusters[cid] = self.clusters[cid]
                cid = self.clusters[cid]["parent"]
        edges = [
            e for e in self.edges.values() if e["from"] in self.nodes and e["to"] in self.nodes
        ]
        return {
            "title": self.title,
            "clusters": sorted(clusters.values(), key=_cluster_key),
            "nodes": [self.nodes[k] for k in sorted(self.nodes)],
            "edges": sorted(edges, key=lambda e: (e["from"], e["to"], e["kind"])),
        }


def _cluster_key(cluster):
    area = cluster["id"].split(":", 1)[0]
    return (
        CLUSTER_ORDER.index(area) if area in CLUSTER_ORDER else len(CLUSTER_ORDER),
        cluster["id"],
    )


# --- DOT ---------------------------------------------------------------------------


def quote(text: Any) -> str:
    """``text`` as a DOT quoted string: backslashes, quotes and line breaks escaped.

    Escaping every backslash also keeps Graphviz from reading a name's ``\\N``
    or ``\\l`` as a label escape, so a name is drawn exactly as it is.
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{text}"'


def _label(node):
    lines = [str(node["name"])] + [str(d) for d in node.get("details") or ()]
    if node.get("current"):
        lines.append("(current)")
    # each line escaped on its own, joined by DOT's own line break
    return '"' + "\\n".join(quote(line)[1:-1] for line in lines) + '"'


def _attrs(pairs):
    return ", ".join(f"{key}={value}" for key, value in pairs)


def _node_line(node, indent):
    style = dict(STYLES.get(node["kind"], {"shape": "box"}))
    if node.get("current"):
        style.update(CURRENT_STYLE)
    if node.get("inactive"):
        style["style"] = style.get("style", "") + ",dashed" if style.get("style") else "dashed"
        style["fontcolor"] = "#666666"
    pairs = [("label", _label(node))]
    pairs += [(key, quote(value)) for key, value in sorted(style.items())]
    return f"{indent}{quote(node['id'])} [{_attrs(pairs)}];"


def _edge_line(edge):
    src, dst = edge["from"], edge["to"]
    style = dict(EDGE_STYLES.get(edge["kind"], {}))
    if edge.get("label"):
        style["label"] = str(edge["label"])
    pairs = [(key, quote(value)) for key, value in sorted(style.items())]
    if edge["kind"] in REVERSED:
        src, dst = dst, src
        pairs.append(("dir", "back"))
    tail = f" [{_attrs(pairs)}]" if pairs else ""
    return f"  {quote(src)} -> {quote(dst)}{tail};"


def render_dot(model: dict[str, Any]) -> str:
    """The DOT text of a model (what :meth:`Graph.as_dict` returns, or the same shape).

    Clusters nest by ``parent`` and are drawn in :data:`CLUSTER_ORDER`; nodes
    sort by id and edges by (from, to, kind), so the same host gives the same text.
    """
    clusters = {c["id"]: c for c in model.get("clusters") or ()}
    members: dict[Optional[str], list[dict[str, Any]]] = {}
    for node in sorted(model.get("nodes") or (), key=lambda n: n["id"]):
        cid = node.get("cluster")
        members.setdefault(cid if cid in clusters else None, []).append(node)
    children: dict[Optional[str], list[dict[str, Any]]] = {}
    for cluster in sorted(clusters.values(), key=_cluster_key):
        parent = cluster.get("parent")
        children.setdefault(parent if parent in clusters else None, []).append(cluster)

    lines = [f"digraph {quote(model.get('title') or 'salt-kvm')} {{"]
    graph = [
        ("rankdir", "LR"),
        ("fontname", '"Helvetica"'),
        ("fontsize", "12"),
        ("nodesep", "0.25"),
        ("ranksep", "0.5"),
    ]
    if model.get("title"):
        graph += [("label", quote(model["title"])), ("labelloc", "t")]
    lines.append(f"  graph [{_attrs(graph)}];")
    lines.append('  node [fontname="Helvetica", fontsize="11"];')
    lines.append('  edge [fontname="Helvetica", fontsize="9", color="#555555"];')

    def emit(cid, depth):
        indent = "  " * depth
        for cluster in children.get(cid, ()):
            lines.append(f"{indent}subgraph {quote('cluster_' + cluster['id'])} {{")
            inner = indent + "  "
            label = quote(cluster.get("label") or cluster["id"])
            lines.append(f'{inner}label={label}; style="rounded"; color="#999999";')
            emit(cluster["id"], depth + 1)
            lines.append(f"{indent}}}")
        for node in members.get(cid, ()):
            lines.append(_node_line(node, indent))

    emit(None, 1)
    for edge in sorted(model.get("edges") or (), key=lambda e: (e["from"], e["to"], e["kind"])):
        lines.append(_edge_line(edge))
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- arguments ---------------------------------------------------------------------


def _list_arg(value, path):
    """A list of strings from a list or a comma-separated string (``None``: None)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(path, f"{value!r} is not a list of names (a list, or comma-separated)")
    value = [v for v in value if v]
    if not value:
        raise InvalidInput(path, "is empty")
    return value


def parse_parts(parts: Any) -> set[str]:
    """The areas to draw (every one by default), validated."""
    chosen = _list_arg(parts, "parts")
    if chosen is None or chosen == ["all"]:
        return set(PARTS)
    for part in chosen:
        if part not in PARTS:
            raise InvalidInput("parts", f"{part!r} is not one of {', '.join(PARTS)}")
    return set(chosen)


def check_output(fmt: Any, path: Any) -> str:
    """Validate ``format`` and ``path``; return the format, lower case."""
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise InvalidInput("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    fmt = fmt.lower()
    if path is None or path == "":
        if fmt in IMAGE_FORMATS:
            raise InvalidInput(
                "path", f"is required with format={fmt}: the absolute path of the file to write"
            )
        return fmt
    if not isinstance(path, str) or not os.path.isabs(path) or "\0" in path:
        raise InvalidInput("path", f"{path!r} is not an absolute path")
    if os.path.isdir(path):
        raise InvalidInput("path", f"{path!r} is a directory, not a file")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise InvalidInput("path", f"directory {parent!r} does not exist")
    return fmt


def _check_netns(netns):
    if netns is None:
        return
    if not isinstance(netns, str) or not netns or "/" in netns or netns in (".", ".."):
        raise InvalidInput("netns", f"{netns!r} is not a network namespace name")
    if not os.path.exists(os.path.join("/run/netns", netns)):
        raise InvalidInput("netns", f"network namespace {netns!r} does not exist")


# --- reading the host --------------------------------------------------------------


class _Filter:
    def __init__(self, patterns):
        self.patterns = patterns

    def __call__(self, name):
        return self.patterns is None or any(
            fnmatch.fnmatchcase(name or "", p) for p in self.patterns
        )


def _read_vms(session):
    """``{name: {state, running, memory, vcpus, disks, interfaces}}`` of every VM."""
    with libvirt_errors("cannot list VMs"):
        doms = session.conn.listAllDomains(0)
    out = {}
    for dom in doms:
        with libvirt_caught() as caught:
            name = dom.name()
            state, max_kib, _mem, vcpus, _cpu = dom.info()
            xml = dom.XMLDesc(0)
        if caught:  # removed while we looked
            continue
        out[name] = {
            "state": _DOMAIN_STATES.get(state, "unknown"),
            "running": state in (1, 2, 3, 7),
            "memory": max_kib * 1024 if max_kib else None,
            "vcpus": vcpus,
            "disks": [d.as_dict() for d in dxml.Domain(xml).disks if d.source],
            "interfaces": netxml.interfaces_of(parse(xml)),
        }
    return out


def _networks(session):
    """``{name: {mode, bridge, active, address}}`` of the libvirt networks."""
    out = {}
    for name, rec in network_mod.networks(session).items():
        net = netxml.Network(rec["xml"])
        spec = net.spec()
        out[name] = {
            "mode": net.mode,
            "bridge": net.bridge,
            "active": rec["active"],
            "autostart": rec["autostart"],
            "address": spec.get("address"),
            "address6": spec.get("address6"),
        }
    return out


def _bridge_id(ns, name):
    return f"bridge:{ns}/{name}"


def _port_id(ns, link):
    if link["kind"] == "bridge":
        return _bridge_id(ns, link["name"])
    if link["kind"] == "tun":
        return f"tap:{ns}/{link['name']}"
    return f"nic:{ns}/{link['name']}"


class _Builder:
    def __init__(self, session, netns, parts, names, title):
        self.session = session
        self.netns = netns
        self.ns = netns or ""
        self.parts = (
            parts | {"vms"} if "snapshots" in parts else parts
        )  # snapshot trees hang off their VMs
        self.keep = _Filter(names)
        self.graph = Graph(title)
        self.vms = {}
        self.nets = {}
        self.kept_bridges = set()  # root-namespace bridges kept because their network is kept

    # clusters
    def _net_cluster(self, ns):
        if ns == self.ns:
            label = f"network namespace {self.netns}" if self.netns else "host network"
            return self.graph.cluster("net", label)
        return self.graph.cluster("root", "host network (libvirt's namespace)")

    def build(self):
        if "vms" in self.parts or "bridges" in self.parts or "storage" in self.parts:
            self.vms = {n: v for n, v in _read_vms(self.session).items() if self.keep(n)}
        if "networks" in self.parts or "bridges" in self.parts:
            self.nets = _networks(self.session)
        if "networks" in self.parts:
            self._add_networks()
        if "bridges" in self.parts:
            self._add_kernel_bridges()
            self._add_libvirt_taps()
        if "vms" in self.parts:
            self._add_vms()
        if "storage" in self.parts:
            self._add_storage()
        if "snapshots" in self.parts:
            self._add_snapshots()
        return self.graph.as_dict()

    # --- networks
    def _add_networks(self):
        cluster = self.graph.cluster("libvirt", "libvirt networks")
        for name, net in sorted(self.nets.items()):
            if not self.keep(name):
                continue
            details = [net["mode"]] + [a for a in (net["address"], net["address6"]) if a]
            nid = self.graph.node(
                f"network:{name}",
                "network",
                name,
                cluster=cluster,
                details=details,
                inactive=not net["active"] or None,
                mode=net["mode"],
                bridge=net["bridge"],
                active=net["active"],
                autostart=net["autostart"],
            )
            if net["bridge"]:
                self.kept_bridges.add(net["bridge"])
                if net["active"] or net["mode"] == "bridge":
                    self.graph.edge(nid, _bridge_id("", net["bridge"]), "bridge")

    # --- kernel bridges
    def _bridge_kept(self, name, ns):
        return self.keep(name) or (ns == "" and name in self.kept_bridges)

    def _add_kernel_bridges(self):
        host = bridge_mod.host_state(self.session, self.netns)
        taps = self._taps() if not self.netns else {}
        cluster = self._net_cluster(self.ns)
        ns = self.ns
        for name in sorted(n for n, link in host["links"].items() if link["kind"] == "bridge"):
            if not self._bridge_kept(name, ns):
                continue
            view = nl.bridge_view(host, name, vms=taps)
            details = list(view["addresses"])
            if view.get("stp"):
                details.append("STP")
            if view.get("vlan_filtering"):
                details.append("VLAN filtering")
            bid = self.graph.node(
                _bridge_id(ns, name),
                "bridge",
                name,
                cluster=cluster,
                details=details,
                inactive=not view["up"] or None,
                netns=self.netns,
                mac=view["mac"],
                mtu=view["mtu"],
            )
            for port in view["ports"]:
                link = host["links"][port["name"]]
                pid = _port_id(ns, link)
                if link["kind"] == "tun":
                    self.graph.node(
                        pid,
                        "tap",
                        port["name"],
                        cluster=cluster,
                        details=[port.get("vm_mac") or port["mac"]],
                        netns=self.netns,
                    )
                    self.graph.edge(bid, pid, "port")
                    if port.get("vm"):
                        self.graph.edge(pid, f"vm:{port['vm']}", "tap")
                    continue
                if link["kind"] != "bridge":
                    self._add_nic(host, link, cluster)
                self.graph.edge(pid, bid, "port", label=_vlans(port.get("vlans")))

    def _add_nic(self, host, link, cluster):
        ns = self.ns
        details = []
        if link["kind"] == "vlan":
            details.append(f"VLAN {link['vlan_id']}")
        elif link["kind"] and link["kind"] != "device":
            details.append(link["kind"])
        details += [a["cidr"] for a in nl.global_addresses(host, link["name"])]
        nid = self.graph.node(
            _port_id(ns, link),
            "nic",
            link["name"],
            cluster=cluster,
            details=details,
            inactive=not link["up"] or None,
            netns=self.netns,
            mac=link["mac"],
            mtu=link["mtu"],
        )
        parent = host["links"].get(link["parent"]) if link.get("parent") else None
        if parent is not None:
            self._add_nic(host, parent, cluster)
            self.graph.edge(_port_id(ns, parent), nid, "vlan")
        return nid

    def _taps(self):
        """``{tap: {vm, mac}}`` of the running VMs read (as :func:`salt_kvm.bridge.vm_taps`)."""
        out = {}
        for vm, info in self.vms.items():
            if info["running"]:
                for iface in info["interfaces"]:
                    if iface["tap"]:
                        out[iface["tap"]] = {"vm": vm, "mac": iface["mac"]}
        return out

    def _iface_bridge(self, iface):
        if iface["type"] == "bridge":
            return iface["bridge"]
        if iface["type"] == "network":
            net = self.nets.get(iface["network"])
            if net and net["active"]:
                return net["bridge"]
        return None

    def _add_libvirt_taps(self):
        """With ``netns``: the bridges of libvirt networks and the taps of running VMs as
        libvirt reports them (they live in libvirtd's namespace, not in ``netns``)."""
        if not self.netns:
            return  # the kernel's own view of this namespace has them
        cluster = self._net_cluster("")
        for _name, net in sorted(self.nets.items()):
            if net["active"] and net["bridge"] and self._bridge_kept(net["bridge"], ""):
                self.graph.node(
                    _bridge_id("", net["bridge"]), "bridge", net["bridge"], cluster=cluster
                )
        for vm, info in sorted(self.vms.items()):
            if not info["running"]:
                continue
            for iface in info["interfaces"]:
                bridge = self._iface_bridge(iface)
                if not iface["tap"] or not bridge or not self._bridge_kept(bridge, ""):
                    continue
                bid = self.graph.node(_bridge_id("", bridge), "bridge", bridge, cluster=cluster)
                tid = self.graph.node(
                    f"tap:/{iface['tap']}",
                    "tap",
                    iface["tap"],
                    cluster=cluster,
                    details=[iface["mac"]],
                )
                self.graph.edge(bid, tid, "port")
                self.graph.edge(tid, f"vm:{vm}", "tap")

    # --- VMs
    def _add_vms(self):
        cluster = self.graph.cluster("vms", "VMs")
        # taps drawn bridge -> tap -> vm (their ids name the root namespace: libvirt's taps
        # live there)
        tapped = {
            (e["from"].replace(f"tap:{self.ns}/", "tap:/", 1), e["to"])
            for e in self.graph.edges.values()
            if e["kind"] == "tap"
        }
        for vm, info in sorted(self.vms.items()):
            details = [info["state"]]
            sizes = []
            if info["vcpus"]:
                sizes.append(f"{info['vcpus']} vCPU")
            if info["memory"]:
                sizes.append(units.format_size(info["memory"]))
            if sizes:
                details.append(", ".join(sizes))
            vid = self.graph.node(
                f"vm:{vm}",
                "vm",
                vm,
                cluster=cluster,
                details=details,
                inactive=not info["running"] or None,
                state=info["state"],
            )
            for iface in info["interfaces"]:
                if info["running"] and iface["tap"] and (f"tap:/{iface['tap']}", vid) in tapped:
                    continue  # drawn as bridge -> tap -> vm
                if iface["type"] == "network" and iface["network"]:
                    self.graph.edge(
                        vid, f"network:{iface['network']}", "interface", label=iface["mac"]
                    )
                elif iface["type"] == "bridge" and iface["bridge"]:
                    self.graph.edge(
                        vid, _bridge_id("", iface["bridge"]), "interface", label=iface["mac"]
                    )
                elif iface["type"] == "direct" and iface["dev"]:
                    if "bridges" in self.parts and not self.netns:
                        self.graph.node(
                            f"nic:/{iface['dev']}",
                            "nic",
                            iface["dev"],
                            cluster=self._net_cluster(""),
                        )
                    self.graph.edge(vid, f"nic:/{iface['dev']}", "interface", label=iface["mac"])

    # --- storage
    def _add_storage(self):
        graph = self.graph
        storage = graph.cluster("storage", "storage")
        by_path = {}
        backing = []
        for name, entry in sorted(storage_mod.pools(self.session).items()):
            if not self.keep(name):
                continue
            pool = sxml.Pool(entry["xml"])
            details = [pool.type] + ([pool.target] if pool.target else [])
            if entry["active"] and pool.capacity:
                details.append(
                    f"{units.format_size(pool.allocation or 0)} of "
                    f"{units.format_size(pool.capacity)} used"
                )
            cluster = graph.cluster(f"pool:{name}", f"pool {name}", parent=storage)
            pid = graph.node(
                f"pool:{name}",
                "pool",
                name,
                cluster=cluster,
                details=details,
                inactive=not entry["active"] or None,
                type=pool.type,
                target=pool.target,
                active=entry["active"],
            )
            if not entry["active"]:
                continue
            try:
                vols = volumes_mod.volumes(self.session, name)
            except KvmError as exc:  # stopped or removed while we looked
                log.debug("topology: volumes of pool %s: %s", name, exc)
                continue
            for vname, vol in sorted(vols.items()):
                model = sxml.Volume(vol["xml"])
                details = [
                    d
                    for d in (
                        model.format,
                        units.format_size(model.capacity) if model.capacity else None,
                    )
                    if d
                ]
                vid = graph.node(
                    f"volume:{name}/{vname}",
                    "volume",
                    vname,
                    cluster=cluster,
                    details=details,
                    pool=name,
                    path=model.path,
                    format=model.format,
                    capacity=model.capacity,
                )
                graph.edge(pid, vid, "volume")
                by_path[f"{name}/{vname}"] = vid
                if model.path:
                    by_path[model.path] = vid
                if model.backing_path:
                    backing.append((vid, model.backing_path))
        for vid, path in backing:
            graph.edge(vid, by_path.get(path) or self._image(path), "backing")
        for vm, info in sorted(self.vms.items()):
            for disk in info["disks"]:
                top = by_path.get(disk["source"]) or self._image(disk["source"])
                graph.edge(top, f"vm:{vm}", "disk", label=disk["target"])
                for below in disk["backing"]:
                    if not below["file"]:
                        break
                    lower = by_path.get(below["file"]) or self._image(below["file"])
                    graph.edge(top, lower, "backing")
                    top = lower

    def _image(self, path):
        """A node for an image file (or device) that is in no pool read."""
        cluster = self.graph.cluster("images", "images outside pools", parent="storage")
        directory, base = os.path.split(path.rstrip("/"))
        return self.graph.node(
            f"image:{path}",
            "image",
            base or path,
            cluster=cluster,
            details=[directory] if directory else [],
            path=path,
        )

    # --- snapshots
    def _add_snapshots(self):
        for vm in sorted(self.vms):
            try:
                roots = snapshot_mod.snapshot_tree(self.session, vm)
            except KvmError as exc:  # removed while we looked, or a name salt-kvm does not take
                log.debug("topology: snapshots of %s: %s", vm, exc)
                continue
            if not roots:
                continue
            cluster = self.graph.cluster(f"snapshots:{vm}", f"snapshots of {vm}")
            for root in roots:
                self.graph.edge(f"vm:{vm}", self._snapshot(vm, root, cluster), "snapshot")

    def _snapshot(self, vm, snap, cluster):
        details = [
            f"{snap['kind']}, {snap['state']}" if snap["state"] else snap["kind"],
            snap["created"],
        ]
        sid = self.graph.node(
            f"snapshot:{vm}/{snap['name']}",
            "snapshot",
            snap["name"],
            cluster=cluster,
            details=details,
            vm=vm,
            current=snap["current"] or None,
            created=snap["created"],
        )
        for child in snap["children"]:
            self.graph.edge(sid, self._snapshot(vm, child, cluster), "child")
        return sid


def _vlans(vlans):
    """An arrow's label for a port's VLANs (``{pvid, untagged, tagged}``, see
    :mod:`salt_kvm.bridge_netlink`)."""
    if not vlans:
        return None
    parts = []
    if vlans.get("pvid") is not None:
        parts.append(f"pvid {vlans['pvid']}")
    for key in ("untagged", "tagged"):
        if vlans.get(key):
            parts.append(f"{key} {','.join(str(v) for v in vlans[key])}")
    return "VLAN " + "; ".join(parts) if parts else None


def build(
    session: Any,
    *,
    netns: Optional[str] = None,
    parts: Any = None,
    names: Any = None,
    title: Optional[str] = None,
) -> dict[str, Any]:
    """The host as a graph model: ``{title, clusters, nodes, edges}`` (see the module doc)."""
    _check_netns(netns)
    chosen = parse_parts(parts)
    patterns = _list_arg(names, "names")
    if title is None:
        title = f"host {socket.gethostname()}" + (f" (network namespace {netns})" if netns else "")
    return _Builder(session, netns, chosen, patterns, title).build()


# --- writing ------------------------------------------------------------------------


def _write_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".topology-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise KvmError(f"cannot write {path}: {exc.strerror or exc}") from None


def dot_command() -> str:
    """The path of Graphviz's ``dot``; a clear error naming the package when it is missing."""
    found = shutil.which("dot")
    if not found:
        raise KvmError(
            "Graphviz's 'dot' command is not installed: install the package "
            f"{GRAPHVIZ_PACKAGE} (apt-get install {GRAPHVIZ_PACKAGE})"
        )
    return found


def run_dot(text: str, fmt: str) -> bytes:
    """Render DOT ``text`` to ``fmt`` (svg, png) with Graphviz; return the bytes."""
    cmd = [dot_command(), f"-T{fmt}"]
    try:
        proc = subprocess.run(
            cmd, input=text.encode("utf-8"), capture_output=True, timeout=DOT_TIMEOUT, check=False
        )  # nosec B603
    except subprocess.TimeoutExpired:
        raise KvmError(f"dot -T{fmt} did not finish in {DOT_TIMEOUT} s") from None
    except OSError as exc:
        raise KvmError(f"cannot run dot: {exc.strerror or exc}") from None
    if proc.returncode != 0 or not proc.stdout:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise KvmError(
            f"dot -T{fmt} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}"
        )
    return proc.stdout


def topology(  # pylint: disable=redefined-builtin
    session: Any,
    format: str = "dot",
    *,
    path: Optional[str] = None,
    netns: Optional[str] = None,
    parts: Any = None,
    names: Any = None,
) -> Union[str, dict[str, Any]]:
    """What ``kvm.topology`` returns: DOT text, the JSON model, or a summary of the file written."""
    fmt = check_output(format, path)
    if fmt in IMAGE_FORMATS:
        dot_command()  # fail before reading the host
    model = build(session, netns=netns, parts=parts, names=names)
    if fmt == "json" and not path:
        return model
    text = render_dot(model)
    if fmt == "dot" and not path:
        return text
    if fmt == "json":
        data = json.dumps(model, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    elif fmt == "dot":
        data = text.encode("utf-8")
    else:
        data = run_dot(text, fmt)
    _write_atomic(path, data)
    return {"path": path, "format": fmt, "nodes": len(model["nodes"]), "edges": len(model["edges"])}
