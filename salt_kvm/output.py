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

The data arrives wrapped as Salt prints it: ``{"local": data}`` from
``salt-call``, ``{minion_id: data}`` from the master; each minion gets a
``minion:`` line and its text indented under it. Anything else (errors,
state returns, other functions) goes to ``fallback``: Salt's ``nested`` or
``highstate`` outputter in the loader module. An empty list or dict has no
shape; the function's name (``fun``), when known, says which "nothing" it is.

Pure functions: no Salt dunders, no colour unless ``color=True``.
"""

import json
import os

from salt_kvm import units

BRIDGES = "bridge_list"
POOLS = "pool_list"
VOLUMES = "volume_list"
SNAPSHOTS = "snapshot_tree"

_BRIDGE_KEYS = frozenset(("name", "id", "stp", "ports"))
_POOL_KEYS = frozenset(("type", "state", "capacity", "allocation", "available", "target"))
_VOLUME_KEYS = frozenset(("path", "format", "capacity", "allocation"))
_SNAPSHOT_KEYS = frozenset(("name", "children", "current"))

_NOTHING = {
    BRIDGES: "no bridges",
    POOLS: "no storage pools",
    VOLUMES: "no volumes",
    SNAPSHOTS: "no snapshots",
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
    """``kvm.pool_list`` -> ``pool_list`` (one of ours), else None."""
    if not isinstance(fun, str) or not fun.startswith("kvm."):
        return None
    name = fun[len("kvm."):]
    return name if name in _NOTHING else None


def _is_bridge(item):
    return isinstance(item, dict) and _BRIDGE_KEYS <= item.keys() and isinstance(item["ports"], list)


def _is_snapshot(item):
    return (
        isinstance(item, dict)
        and _SNAPSHOT_KEYS <= item.keys()
        and isinstance(item["children"], list)
        and all(_is_snapshot(child) for child in item["children"])
    )


def _all_values(data, keys):
    return all(isinstance(v, dict) and keys <= v.keys() for v in data.values())


def shape(data, fun=None):
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


def is_state_return(data):
    """True for ``{minion: {"mod_|-id_|-name_|-fun": {result, ...}}}`` (state runs)."""
    if not isinstance(data, dict) or not data:
        return False
    found = False
    for ret in data.values():
        if isinstance(ret, dict) and ret:
            if not all(isinstance(k, str) and "_|-" in k and isinstance(v, dict) for k, v in ret.items()):
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


def table(headers, rows, color=False, right=()):
    """Aligned columns (two spaces apart); ``right``: indexes of right-aligned columns."""
    rows = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i][0]) for row in rows]) for i, h in enumerate(headers)]

    def line(cells):
        parts = []
        for i, (text, style) in enumerate(cells):
            pad = " " * (widths[i] - len(text))
            painted = _paint(text, style, color)
            parts.append(pad + painted if i in right else painted + pad)
        return "  ".join(parts).rstrip()

    return [line([(h, "bold") for h in headers])] + [line(row) for row in rows]


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


def bridge_lines(bridges, color=False):
    """``kvm.bridge_list`` like ``brctl show``: bridge, id, STP, ports, addresses."""
    if not bridges:
        return [_NOTHING[BRIDGES]]
    rows = []
    for bridge in sorted(bridges, key=lambda b: str(b.get("name"))):
        vms = bridge.get("vms") or {}
        ports = [_port({"name": p, "vm": vms.get(p)} if isinstance(p, str) else p) for p in bridge.get("ports") or []]
        addresses = [str(a) for a in bridge.get("addresses") or []]
        for i in range(max(1, len(ports), len(addresses))):
            first = i == 0
            rows.append(
                [
                    (bridge["name"], "cyan") if first else "",
                    (bridge.get("id") or "-") if first else "",
                    _yes_no(bridge.get("stp")) if first else "",
                    ports[i] if i < len(ports) else ("-" if first else ""),
                    addresses[i] if i < len(addresses) else ("-" if first else ""),
                ]
            )
    return table(["BRIDGE", "ID", "STP", "PORTS", "ADDRESSES"], rows, color)


def _used(allocation, capacity):
    if not capacity or allocation is None or isinstance(capacity, bool):
        return "-"
    try:
        return f"{100.0 * allocation / capacity:.0f}%"
    except (TypeError, ValueError):
        return "-"


def pool_lines(pools, color=False):
    """``kvm.pool_list`` as a table: sizes in binary units, the share used."""
    if not pools:
        return [_NOTHING[POOLS]]
    rows = []
    for name in sorted(pools, key=str):
        pool = pools[name]
        running = pool.get("state") == "running" or (pool.get("active") and pool.get("state") is None)
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
    headers = ["POOL", "TYPE", "STATE", "AUTOSTART", "CAPACITY", "ALLOCATION", "AVAILABLE", "USED", "TARGET"]
    return table(headers, rows, color, right=(4, 5, 6, 7))


def _backing(backing, path):
    """The backing file: its bare name when it sits beside the volume."""
    if not backing:
        return "-"
    if path and os.path.dirname(str(backing)) == os.path.dirname(str(path)):
        return os.path.basename(str(backing))
    return str(backing)


def volume_lines(volumes, color=False):
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
    return table(headers, rows, color, right=(2, 3))


def _created(value):
    """``2024-01-31T23:59:59Z`` -> ``2024-01-31 23:59:59`` (UTC, as the header says)."""
    if not value:
        return "-"
    return str(value).replace("T", " ").rstrip("Z")


def snapshot_lines(roots, color=False):
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
    return table(["SNAPSHOT", "KIND", "STATE", "MEMORY", "CREATED (UTC)", ""], rows, color)


_RENDER = {
    BRIDGES: bridge_lines,
    POOLS: pool_lines,
    VOLUMES: volume_lines,
    SNAPSHOTS: snapshot_lines,
}


def plain(data):
    """The fallback without Salt: the data as indented JSON."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def render(data, color=False, fun=None, fallback=None):
    """The text ``--out=kvm`` prints for ``data``.

    ``data`` is a function's return, or Salt's ``{minion_id: return}``
    (``{"local": return}`` from ``salt-call``). ``fun`` is the function that
    ran, when known (``kvm.pool_list``). ``fallback(data)`` renders what is
    not recognised (default: :func:`plain`).
    """
    fallback = fallback or plain
    kind = shape(data, fun)
    if kind:
        return "\n".join(_RENDER[kind](data, color))
    if isinstance(data, dict) and data and any(shape(ret, fun) for ret in data.values()):
        blocks = []
        for minion, ret in data.items():
            kind = shape(ret, fun)
            if kind is None:
                blocks.append(fallback({minion: ret}))
                continue
            body = [INDENT + line if line else line for line in _RENDER[kind](ret, color)]
            blocks.append("\n".join([_paint(f"{minion}:", "cyan", color)] + body))
        return "\n".join(blocks)
    return fallback(data)
