"""Text for people: what the ``kvm`` outputter prints (``--out=kvm``).

Salt hands an outputter the return data only, so each function's data is
recognised by its shape:

- ``kvm.bridge_list``: a list of ``{name, id, stp, ports, vms, addresses}`` -> a
  table like ``brctl show``, one line per port and address (a port given as
  ``{name, vm}`` shows the VM behind the tap);
- ``kvm.pool_list``: ``{pool: {type, state, autostart, capacity, allocation,
  available, target}}`` -> a table with binary sizes and the share used;
- ``kvm.volume_list``: ``{volume: {path, format, capacity, allocation,
  backing}}`` -> a table;
- ``kvm.snapshot_tree``: a list of ``{name, kind, state, memory, created,
  current, children}`` -> a tree drawn with ``├──`` and ``└──``, the current
  snapshot marked.

When the function that ran is known (``fun``, which Salt passes on), it
decides, and more functions get text of their own:

- ``kvm.network_list``, ``kvm.snapshot_list``, ``kvm.network_leases``,
  ``kvm.bridge_fdb``: tables, one row per network, snapshot, lease, MAC;
- ``kvm.vm_list``: a table like ``virsh list --all`` with the VM's disks
  (target, pool/volume) and NICs (bridge or network, MAC, IP), one line each;
- ``kvm.pool_show``, ``kvm.volume_show``, ``kvm.network_show``,
  ``kvm.bridge_show``, ``kvm.snapshot_show``, ``kvm.vm_show``, ``kvm.host_info``: one
  ``FIELD VALUE`` line per key (sizes in binary units, lists such as a
  volume's ``used_by`` and ``backing_of`` joined with commas), then a table
  for each key that holds a list of records (a bridge's ports, a network's
  DHCP hosts) and the XML, if any, as it is;
- ``kvm.pool_dumpxml``, ``kvm.volume_dumpxml``, ``kvm.network_dumpxml``:
  the XML as it is.

The data arrives wrapped as Salt prints it: ``{"local": data}`` from
``salt-call``, ``{minion_id: data}`` from the master; each minion gets a
``minion:`` line and its text indented under it (never a minion id in a
table). Anything else (errors, state returns, other functions) goes to
``fallback``: Salt's ``nested`` or ``highstate`` outputter in the loader
module. An empty list or dict has no shape; the function's name says which
"nothing" it is.

Pure functions: no Salt dunders, no colour unless ``color=True``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Optional

from salt_kvm import units

BRIDGES = "bridge_list"
POOLS = "pool_list"
VOLUMES = "volume_list"
SNAPSHOTS = "snapshot_tree"
NETWORKS = "network_list"
SNAPSHOT_LIST = "snapshot_list"
LEASES = "network_leases"
FDB = "bridge_fdb"
VMS = "vm_list"
DETAIL = "show"
XML = "dumpxml"

#: functions shown as ``FIELD VALUE`` lines
SHOW_FUNCTIONS = frozenset(
    (
        "pool_show",
        "volume_show",
        "network_show",
        "bridge_show",
        "snapshot_show",
        "vm_show",
        "host_info",
    )
)
#: functions whose return is raw XML text
XML_FUNCTIONS = frozenset(("pool_dumpxml", "volume_dumpxml", "network_dumpxml"))

_BRIDGE_KEYS = frozenset(("name", "id", "stp", "ports"))
_POOL_KEYS = frozenset(("type", "state", "capacity", "allocation", "available", "target"))
_VOLUME_KEYS = frozenset(("path", "format", "capacity", "allocation"))
_SNAPSHOT_KEYS = frozenset(("name", "children", "current"))

_NOTHING = {
    BRIDGES: "no bridges",
    POOLS: "no storage pools",
    VOLUMES: "no volumes",
    SNAPSHOTS: "no snapshots",
    NETWORKS: "no libvirt networks",
    SNAPSHOT_LIST: "no snapshots",
    LEASES: "no leases",
    FDB: "no MAC addresses",
    VMS: "no VMs",
}

#: the indent Salt's nested outputter puts under a minion's name
INDENT = "    "

_ANSI = {
    "bold": "\033[1m",
    "cyan": "\033[0;36m",
    "green": "\033[0;32m",
    "red": "\033[0;31m",
    "yellow": "\033[0;33m",
}
_RESET = "\033[0m"


# --- recognising the data ----------------------------------------------------


def _fun_kind(fun):
    """``kvm.pool_list`` -> ``pool_list``, ``kvm.pool_show`` -> ``show``,
    ``kvm.pool_dumpxml`` -> ``dumpxml`` (one of ours), else None."""
    if not isinstance(fun, str) or not fun.startswith("kvm."):
        return None
    name = fun[len("kvm.") :]
    if name in SHOW_FUNCTIONS:
        return DETAIL
    if name in XML_FUNCTIONS:
        return XML
    return name if name in _NOTHING else None


def _records(data):
    return isinstance(data, list) and all(isinstance(item, dict) for item in data)


def fits(kind: Optional[str], data: Any) -> bool:
    """Whether ``data`` is what function ``kind`` returns (an error string is not)."""
    if kind in (BRIDGES, SNAPSHOTS):
        return shape(data) == kind or data == []
    if kind in (POOLS, VOLUMES):
        return shape(data) == kind or data == {}
    if kind in (NETWORKS, VMS):
        return isinstance(data, dict) and all(isinstance(v, dict) for v in data.values())
    if kind in (SNAPSHOT_LIST, LEASES, FDB):
        return _records(data)
    if kind == DETAIL:
        return isinstance(data, dict) and bool(data)
    if kind == XML:
        return isinstance(data, str) and data.lstrip().startswith("<")
    return False


def _is_bridge(item):
    return (
        isinstance(item, dict) and _BRIDGE_KEYS <= item.keys() and isinstance(item["ports"], list)
    )


def _is_snapshot(item):
    return (
        isinstance(item, dict)
        and _SNAPSHOT_KEYS <= item.keys()
        and isinstance(item["children"], list)
        and all(_is_snapshot(child) for child in item["children"])
    )


def _all_values(data, keys):
    return all(isinstance(v, dict) and keys <= v.keys() for v in data.values())


def shape(data: Any, fun: Optional[str] = None) -> Optional[str]:
    """Which function's data this is (``bridge_list``, ``pool_list``,
    ``volume_list``, ``snapshot_tree``), or None.

    ``fun`` (``kvm.pool_list``) only decides for an empty list or dict.
    """
    hint = _fun_kind(fun)
    if isinstance(data, list):
        if not data:
            return hint if hint in (BRIDGES, SNAPSHOTS) else None
        if all(_is_bridge(item) for item in data):
            return BRIDGES
        if all(_is_snapshot(item) for item in data):
            return SNAPSHOTS
    elif isinstance(data, dict):
        if not data:
            return hint if hint in (POOLS, VOLUMES) else None
        if _all_values(data, _POOL_KEYS):
            return POOLS
        if _all_values(data, _VOLUME_KEYS):
            return VOLUMES
    return None


def is_state_return(data: Any) -> bool:
    """True for ``{minion: {"mod_|-id_|-name_|-fun": {result, ...}}}`` (state runs)."""
    if not isinstance(data, dict) or not data:
        return False
    found = False
    for ret in data.values():
        if isinstance(ret, dict) and ret:
            if not all(
                isinstance(k, str) and "_|-" in k and isinstance(v, dict) for k, v in ret.items()
            ):
                return False
            found = True
    return found


# --- text --------------------------------------------------------------------


def _paint(text, style, color):
    if not color or not style or not text:
        return text
    return f"{_ANSI[style]}{text}{_RESET}"


def _cell(value):
    """A table cell: ``text`` or ``(text, style)`` -> ``(text, style)``."""
    if isinstance(value, tuple):
        return str(value[0]), value[1]
    return str(value), None


def table(
    headers: list[str],
    rows: Iterable[Iterable[Any]],
    *,
    color: bool = False,
    right: tuple[int, ...] = (),
) -> list[str]:
    """Aligned columns (two spaces apart); ``right``: indexes of right-aligned columns."""
    body = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i][0]) for row in body]) for i, h in enumerate(headers)]

    def line(cells):
        parts = []
        for i, (text, style) in enumerate(cells):
            pad = " " * (widths[i] - len(text))
            painted = _paint(text, style, color)
            parts.append(pad + painted if i in right else painted + pad)
        return "  ".join(parts).rstrip()

    return [line([(h, "bold") for h in headers])] + [line(row) for row in body]


def _size(value):
    if value is None or isinstance(value, bool):
        return "-"
    try:
        return units.format_size(value)
    except (TypeError, ValueError):
        return str(value)


def _yes_no(value):
    if value is None:
        return "-"
    return "yes" if value else "no"


def _port(port):
    if isinstance(port, dict):
        name = str(port.get("name") or "?")
        return f"{name} ({port['vm']})" if port.get("vm") else name
    return str(port)


def _stacked(head, *lists):
    """The rows of one record whose last columns are lists: the ``head`` cells and each list's
    first item on the first row ("-" for an empty list), one more item per row after."""
    rows = []
    for i in range(max(1, *(len(items) for items in lists))):
        first = i == 0
        cells = list(head) if first else [""] * len(head)
        rows.append(
            cells + [items[i] if i < len(items) else ("-" if first else "") for items in lists]
        )
    return rows


def bridge_lines(bridges: Any, color: bool = False) -> list[str]:
    """``kvm.bridge_list`` like ``brctl show``: bridge, id, STP, ports, addresses."""
    if not bridges:
        return [_NOTHING[BRIDGES]]
    rows = []
    for bridge in sorted(bridges, key=lambda b: str(b.get("name"))):
        vms = bridge.get("vms") or {}
        ports = [
            _port({"name": p, "vm": vms.get(p)} if isinstance(p, str) else p)
            for p in bridge.get("ports") or []
        ]
        addresses = [str(a) for a in bridge.get("addresses") or []]
        rows += _stacked(
            [(bridge["name"], "cyan"), bridge.get("id") or "-", _yes_no(bridge.get("stp"))],
            ports,
            addresses,
        )
    return table(["BRIDGE", "ID", "STP", "PORTS", "ADDRESSES"], rows, color=color)


def _used(allocation, capacity):
    if not capacity or allocation is None or isinstance(capacity, bool):
        return "-"
    try:
        return f"{100.0 * allocation / capacity:.0f}%"
    except (TypeError, ValueError):
        return "-"


def pool_lines(pools: Any, color: bool = False) -> list[str]:
    """``kvm.pool_list`` as a table: sizes in binary units, the share used."""
    if not pools:
        return [_NOTHING[POOLS]]
    rows = []
    for name in sorted(pools, key=str):
        pool = pools[name]
        running = pool.get("state") == "running" or (
            pool.get("active") and pool.get("state") is None
        )
        # an inactive pool's sizes are libvirt's leftovers (usually 0): not shown
        known = running or bool(pool.get("capacity"))
        rows.append(
            [
                (name, "cyan"),
                pool.get("type") or "-",
                (pool.get("state") or "-", "green" if running else "red"),
                _yes_no(pool.get("autostart")),
                _size(pool.get("capacity")) if known else "-",
                _size(pool.get("allocation")) if known else "-",
                _size(pool.get("available")) if known else "-",
                _used(pool.get("allocation"), pool.get("capacity")) if known else "-",
                pool.get("target") or "-",
            ]
        )
    headers = [
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
    return table(headers, rows, color=color, right=(4, 5, 6, 7))


def _backing(backing, path):
    """The backing file: its bare name when it sits beside the volume."""
    if not backing:
        return "-"
    if path and os.path.dirname(str(backing)) == os.path.dirname(str(path)):
        return os.path.basename(str(backing))
    return str(backing)


def volume_lines(volumes: Any, color: bool = False) -> list[str]:
    """``kvm.volume_list`` as a table: format, sizes, backing file, path."""
    if not volumes:
        return [_NOTHING[VOLUMES]]
    rows = []
    for name in sorted(volumes, key=str):
        vol = volumes[name]
        rows.append(
            [
                (name, "cyan"),
                vol.get("format") or "-",
                _size(vol.get("capacity")),
                _size(vol.get("allocation")),
                _backing(vol.get("backing"), vol.get("path")),
                vol.get("path") or "-",
            ]
        )
    headers = ["VOLUME", "FORMAT", "CAPACITY", "ALLOCATION", "BACKING", "PATH"]
    return table(headers, rows, color=color, right=(2, 3))


def _created(value):
    """``2024-01-31T23:59:59Z`` -> ``2024-01-31 23:59:59`` (UTC, as the header says)."""
    if not value:
        return "-"
    return str(value).replace("T", " ").rstrip("Z")


def snapshot_lines(roots: Any, color: bool = False) -> list[str]:
    """``kvm.snapshot_tree`` as a tree (``├──``, ``└──``) with kind, state,
    memory and creation time aligned beside it; the current snapshot marked."""
    if not roots:
        return [_NOTHING[SNAPSHOTS]]
    rows = []

    def walk(node, lead, connector):
        current = bool(node.get("current"))
        rows.append(
            [
                (f"{connector}{node['name']}", "green" if current else None),
                node.get("kind") or "-",
                node.get("state") or "-",
                _yes_no(node.get("memory")),
                _created(node.get("created")),
                ("<- current", "green") if current else "",
            ]
        )
        children = node.get("children") or []
        for i, child in enumerate(children):
            last = i == len(children) - 1
            walk(child, lead + ("    " if last else "│   "), lead + ("└── " if last else "├── "))

    for root in roots:
        walk(root, "", "")
    return table(["SNAPSHOT", "KIND", "STATE", "MEMORY", "CREATED (UTC)", ""], rows, color=color)


def _text(value):
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return _yes_no(value)
    return str(value)


def network_lines(networks: Any, color: bool = False) -> list[str]:
    """``kvm.network_list`` as a table: mode, bridge, active, autostart, persistent."""
    if not networks:
        return [_NOTHING[NETWORKS]]
    rows = []
    for name in sorted(networks, key=str):
        net = networks[name]
        active = net.get("active")
        rows.append(
            [
                (name, "cyan"),
                _text(net.get("mode")),
                _text(net.get("bridge")),
                (_yes_no(active), "green" if active else "red"),
                _yes_no(net.get("autostart")),
                _yes_no(net.get("persistent")),
            ]
        )
    return table(
        ["NETWORK", "MODE", "BRIDGE", "ACTIVE", "AUTOSTART", "PERSISTENT"], rows, color=color
    )


def _vm_disk(disk):
    where = f"{disk['pool']}/{disk['volume']}" if disk.get("pool") else (disk.get("path") or "-")
    kind = " (cdrom)" if disk.get("device") == "cdrom" else ""
    return f"{disk.get('target') or '?'} {where}{kind}"


def _vm_nic(nic):
    parts = [
        nic.get("bridge") or nic.get("network") or nic.get("type") or "?",
        nic.get("mac") or "",
    ]
    parts.extend(nic.get("ip") or [])
    return " ".join(p for p in parts if p)


def vm_lines(vms: Any, color: bool = False) -> list[str]:
    """``kvm.vm_list`` like ``virsh list --all``, with each VM's disks and NICs."""
    if not vms:
        return [_NOTHING[VMS]]
    rows = []
    for name in sorted(vms, key=str):
        vm = vms[name]
        state = vm.get("state")
        disks = [_vm_disk(d) for d in vm.get("disks") or []]
        nics = [_vm_nic(n) for n in vm.get("nics") or []]
        head = [
            (name, "cyan"),
            (_text(state), "green" if state == "running" else "yellow"),
            _yes_no(vm.get("autostart")),
            _text(vm.get("vcpus")),
            _size(vm.get("memory")),
        ]
        rows += _stacked(head, disks, nics)
    return table(
        ["VM", "STATE", "AUTOSTART", "VCPUS", "MEMORY", "DISKS", "NICS"],
        rows,
        color=color,
        right=(3, 4),
    )


def snapshot_list_lines(snapshots: Any, color: bool = False) -> list[str]:
    """``kvm.snapshot_list`` as a table, oldest first: kind, state, memory, created, parent."""
    if not snapshots:
        return [_NOTHING[SNAPSHOT_LIST]]
    rows = []
    for snap in snapshots:
        current = bool(snap.get("current"))
        rows.append(
            [
                (_text(snap.get("name")), "green" if current else "cyan"),
                _text(snap.get("kind")),
                _text(snap.get("state")),
                _yes_no(snap.get("memory")),
                _created(snap.get("created")),
                _text(snap.get("parent")),
                ("<- current", "green") if current else "",
            ]
        )
    return table(
        ["SNAPSHOT", "KIND", "STATE", "MEMORY", "CREATED (UTC)", "PARENT", ""],
        rows,
        color=color,
    )


def _generic_table(records, color=False, *, first=None):
    """Records (dicts) as a table; columns in the order they first appear."""
    columns = []
    for rec in records:
        columns.extend(key for key in rec if key not in columns)
    if first in columns:
        columns.remove(first)
        columns.insert(0, first)
    rows = [[_value(key, rec.get(key)) for key in columns] for rec in records]
    return table([str(c).upper() for c in columns], rows, color=color)


def leases_lines(leases: Any, color: bool = False) -> list[str]:
    """``kvm.network_leases`` as a table, one row per lease."""
    if not leases:
        return [_NOTHING[LEASES]]
    return _generic_table(leases, color, first="mac")


def fdb_lines(entries: Any, color: bool = False) -> list[str]:
    """``kvm.bridge_fdb`` as a table, one row per MAC."""
    if not entries:
        return [_NOTHING[FDB]]
    return _generic_table(entries, color, first="mac")


def _scalars(value):
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)


def _value(key, value):
    """One cell: sizes in binary units, lists of scalars joined, a flat dict as ``k=v``."""
    if key in units_keys and isinstance(value, int) and not isinstance(value, bool):
        return _size(value)
    if _scalars(value):
        return ", ".join(str(v) for v in value) if value else "-"
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        if key in _SIZE_PARENTS:
            value = {
                k: _size(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items()) if value else "-"
    return _text(value)


#: keys shown as sizes
units_keys = frozenset(("capacity", "allocation", "available", "size", "memory_bytes"))
#: mappings whose whole numbers are all sizes (``kvm.host_info``'s memory)
_SIZE_PARENTS = frozenset(("memory",))


def detail_lines(data: Any, color: bool = False) -> list[str]:
    """A ``*_show`` return: ``FIELD VALUE`` lines, then a table per list of
    records, a ``key:`` block per nested mapping, the XML last, as it is."""
    rows, extra, xml = [], [], None
    for key, value in data.items():
        if key == "xml" and isinstance(value, str):
            xml = value
        elif isinstance(value, list) and value and _records(value):
            extra.append((key, _generic_table(value, color)))
        elif (
            isinstance(value, dict)
            and value
            and any(isinstance(v, (dict, list)) and v for v in value.values())
        ):
            if all(isinstance(v, dict) for v in value.values()):
                records = [dict({"name": k}, **v) for k, v in value.items()]
                extra.append((key, _generic_table(records, color, first="name")))
            else:
                extra.append((key, detail_lines(value, color)))
        elif isinstance(value, dict) and len(value) > 3:
            # a longer flat mapping (a host's cpu, memory, paths): its own block
            sizes = key in _SIZE_PARENTS
            extra.append(
                (
                    key,
                    detail_lines(
                        {
                            k: (_size(v) if sizes and isinstance(v, int) else v)
                            for k, v in value.items()
                        },
                        color,
                    ),
                )
            )
        else:
            rows.append([(str(key), "cyan"), _value(key, value)])
    lines = table(["FIELD", "VALUE"], rows, color=color)
    for key, block in extra:
        lines.append("")
        lines.append(_paint(f"{key}:", "bold", color))
        lines.extend(INDENT + line if line else line for line in block)
    if xml:
        lines.append("")
        lines.append(_paint("xml:", "bold", color))
        lines.extend(INDENT + line if line else line for line in xml.rstrip("\n").splitlines())
    return lines


def xml_lines(text: Any, color: bool = False) -> list[str]:  # pylint: disable=unused-argument
    """A ``*_dumpxml`` return: the XML as libvirt wrote it."""
    return text.rstrip("\n").splitlines()


_RENDER = {
    BRIDGES: bridge_lines,
    POOLS: pool_lines,
    VOLUMES: volume_lines,
    SNAPSHOTS: snapshot_lines,
    NETWORKS: network_lines,
    SNAPSHOT_LIST: snapshot_list_lines,
    LEASES: leases_lines,
    FDB: fdb_lines,
    VMS: vm_lines,
    DETAIL: detail_lines,
    XML: xml_lines,
}


def plain(data: Any) -> str:
    """The fallback without Salt: the data as indented JSON."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def _block(minion, kind, ret, color):
    body = [INDENT + line if line else line for line in _RENDER[kind](ret, color)]
    return "\n".join([_paint(f"{minion}:", "cyan", color)] + body)


def render(
    data: Any,
    color: bool = False,
    *,
    fun: Optional[str] = None,
    fallback: Optional[Callable[[Any], str]] = None,
) -> str:
    """The text ``--out=kvm`` prints for ``data``.

    ``data`` is Salt's ``{minion_id: return}`` (``{"local": return}`` from
    ``salt-call``) or, when ``fun`` is not known, possibly a bare return.
    ``fun`` is the function that ran, when known (``kvm.pool_list``): then
    ``data`` is always read as ``{minion_id: return}``, and the function
    decides the text. ``fallback(data)`` renders what is not recognised
    (default: :func:`plain`).
    """
    fallback = fallback or plain
    kind = _fun_kind(fun)
    wrapped = fun is not None and isinstance(data, dict) and bool(data)
    if wrapped and kind is not None and any(fits(kind, ret) for ret in data.values()):
        blocks = []
        for minion, ret in data.items():
            blocks.append(
                _block(minion, kind, ret, color) if fits(kind, ret) else fallback({minion: ret})
            )
        return "\n".join(blocks)
    if not wrapped:
        bare = shape(data, fun)
        if bare and not (isinstance(data, dict) and any(shape(ret, fun) for ret in data.values())):
            return "\n".join(_RENDER[bare](data, color))
    if isinstance(data, dict) and data and any(shape(ret, fun) for ret in data.values()):
        blocks = []
        for minion, ret in data.items():
            found = shape(ret, fun)
            blocks.append(_block(minion, found, ret, color) if found else fallback({minion: ret}))
        return "\n".join(blocks)
    return fallback(data)
