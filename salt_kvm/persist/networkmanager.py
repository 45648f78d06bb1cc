"""NetworkManager keyfiles (``/etc/NetworkManager/system-connections``).

One ``bridge`` profile for the bridge and one port profile per port
(``master=<bridge>``, ``slave-type=bridge``, ``[bridge-port]`` cost,
priority, hairpin and VLANs); a VLAN sub-interface port is a ``vlan`` profile.
UUIDs are derived from the names (uuid5), so rendering is deterministic and a
re-apply rewrites nothing. Files are mode 0600 as NetworkManager requires.
NetworkManager's bridge timers are whole seconds: fractions are rounded.
The tests check the files with ``nmcli --offline`` when it is installed.
"""

import uuid
from typing import Any, Callable

from salt_kvm import bridge_attrs
from salt_kvm.persist import _common

DIR = "/etc/NetworkManager/system-connections"
_NS = uuid.UUID("6f1f3c1e-3c55-4f0e-9a55-73616c746b76")
#: NetworkManager's "no gateway" in ``routeN=destination,gateway,metric`` (a metric needs a
#: gateway field before it): a placeholder written into a keyfile, not an address anything binds to
_NO_GATEWAY4 = "0.0.0.0"  # nosec B104
_NO_GATEWAY = {False: _NO_GATEWAY4, True: "::"}


def _file(name):
    return f"{DIR}/salt-kvm-{name}.nmconnection"


def owned_files(name: str, listdir: Callable[[str], list[str]]) -> list[str]:
    prefix = f"salt-kvm-{name}"
    return [
        f"{DIR}/{f}"
        for f in listdir(DIR)
        if f == f"{prefix}.nmconnection" or f.startswith(f"{prefix}-port-")
    ]


def _uuid(*parts):
    return str(uuid.uuid5(_NS, "/".join(parts)))


def _whole_seconds(value):
    """NetworkManager's bridge timers are whole seconds."""
    return int(round(float(value)))


def _bool(value):
    return "true" if value else "false"


def _sections(sections):
    lines = []
    for title, items in sections:
        items = [(k, v) for k, v in items if v is not None]
        if not items and title not in ("ipv4", "ipv6"):
            continue
        lines.append(f"[{title}]")
        lines.extend(f"{k}={v}" for k, v in items)
        lines.append("")
    return "\n".join(lines)


def _ip(addresses, gateway, routes, v6):
    items = [("method", "manual" if addresses else ("disabled" if v6 else "disabled"))]
    for i, address in enumerate(addresses, 1):
        items.append((f"address{i}", address))
    if addresses and gateway:
        items.append(("gateway", gateway))
    for i, route in enumerate(routes, 1):
        value = _common.destination(route)
        if route.get("via") or route.get("metric") is not None:
            value += "," + (route.get("via") or _NO_GATEWAY[bool(v6)])
        if route.get("metric") is not None:
            value += f",{route['metric']}"
        items.append((f"route{i}", value))
    return items


def render(spec: dict, read: Any) -> dict[str, str]:
    name = spec["name"]
    head = _common.header(spec)
    v4, v6 = _common.split_addresses(spec.get("addresses"))
    r4, r6 = _common.split_routes(spec.get("routes"))
    bridge = [
        (how.name, value)
        for _order, _attr, how, value in bridge_attrs.persisted(
            "networkmanager", spec, words=("false", "true"), timer=_whole_seconds
        )
    ]
    sections = [
        (
            "connection",
            [
                ("id", name),
                ("uuid", _uuid("bridge", name)),
                ("type", "bridge"),
                ("interface-name", name),
                ("autoconnect", "true"),
            ],
        ),
        ("ethernet", [("cloned-mac-address", spec.get("mac")), ("mtu", spec.get("mtu"))]),
        ("bridge", bridge),
        ("ipv4", _ip(v4, spec.get("gateway"), r4, False)),
        ("ipv6", _ip(v6, spec.get("gateway6"), r6, True)),
    ]
    files = {_file(name): head + "\n" + _sections(sections)}
    for port in spec.get("ports", []):
        pname = port["name"]
        vlan = (spec.get("vlan_ports") or {}).get(pname)
        port_items = [("path-cost", port.get("cost")), ("priority", port.get("priority"))]
        if "hairpin" in port:
            port_items.append(("hairpin-mode", _bool(port["hairpin"])))
        vlans = _common.port_vlans(port)
        if vlans:
            entries = []
            for vid in vlans["untagged"]:
                entries.append(f"{vid}{' pvid' if vid == vlans['pvid'] else ''} untagged")
            tagged = [v for v in vlans["tagged"] if v != vlans["pvid"]]
            if vlans["pvid"] in vlans["tagged"]:
                entries.append(f"{vlans['pvid']} pvid")
            entries.extend(_common.ranges(tagged))
            port_items.append(("vlans", ", ".join(entries)))
        conn = [
            ("id", f"{name}-port-{pname}"),
            ("uuid", _uuid("port", name, pname)),
            ("type", "vlan" if vlan else "ethernet"),
            ("interface-name", pname),
            ("master", name),
            ("slave-type", "bridge"),
            ("autoconnect", "true"),
        ]
        sections = [("connection", conn)]
        if vlan:
            sections.append(("vlan", [("parent", vlan["parent"]), ("id", vlan["id"])]))
        sections.append(("bridge-port", port_items))
        files[f"{DIR}/salt-kvm-{name}-port-{pname}.nmconnection"] = (
            head + "\n" + _sections(sections)
        )
    return files
