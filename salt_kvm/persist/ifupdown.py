"""ifupdown (``/etc/network/interfaces``) with Debian's bridge-utils options.

Writes ``/etc/network/interfaces.d/salt-kvm-<bridge>`` (sourced by Debian's
default ``source /etc/network/interfaces.d/*``): one ``manual`` stanza per
port and the bridge's ``inet``/``inet6`` stanzas with ``bridge_*`` options.
A port that the main ``/etc/network/interfaces`` configures (the uplink whose
address moved to the bridge) has its stanza commented out there, marked
``# salt-kvm:``, so the address is not configured twice at boot. Routes other
than the gateway and bridge VLANs are ``up`` commands (ifupdown has no
option for them). Checked with ``ifquery -i FILE`` in the tests.
"""

import re
from typing import Callable, Iterable, Optional

from salt_kvm import bridge_attrs
from salt_kvm.persist import _common

DIR = "/etc/network/interfaces.d"
MAIN = "/etc/network/interfaces"
MARK = "# salt-kvm: "
_STANZA = re.compile(r"^(iface|mapping|auto|allow-[\w-]+|source|source-directory|rename)\b")


def path(name: str) -> str:
    return f"{DIR}/salt-kvm-{name}"


def owned_files(name: str, _listdir: Callable[[str], list[str]]) -> list[str]:
    return [path(name)]


#: where ifupdown's own options go among the bridge attributes' (``Persisted.order``)
_ORDER = {"bridge_ports": 0, "bridge_hw": 75, "port": 85, "bridge_waitport": 90, "mtu": 95}


def _bridge_options(spec):
    name = spec["name"]
    ports = [p["name"] for p in spec.get("ports", [])]
    opts = [(_ORDER["bridge_ports"], f"bridge_ports {' '.join(ports) if ports else 'none'}")]
    for order, _attr, how, value in bridge_attrs.persisted(
        "ifupdown", spec, words=("no", "yes"), timer=_common.num
    ):
        opts.append((order, how.line.format(name=how.name, value=value, bridge=name)))
    if spec.get("mac"):
        opts.append((_ORDER["bridge_hw"], f"bridge_hw {spec['mac']}"))
    for port in spec.get("ports", []):
        if "cost" in port:
            opts.append((_ORDER["port"], f"bridge_pathcost {port['name']} {port['cost']}"))
        if "priority" in port:
            opts.append((_ORDER["port"], f"bridge_portprio {port['name']} {port['priority']}"))
        if "hairpin" in port:
            hairpin = "on" if port["hairpin"] else "off"
            opts.append((_ORDER["port"], f"bridge_hairpin {port['name']} {hairpin}"))
    opts.append((_ORDER["bridge_waitport"], "bridge_waitport 0"))
    if "mtu" in spec:
        opts.append((_ORDER["mtu"], f"mtu {spec['mtu']}"))
    opts = [text for _order, text in sorted(opts, key=lambda item: item[0])]
    for port in spec.get("ports", []):
        vlans = _common.port_vlans(port)
        if not vlans:
            continue
        opts.append(f"up bridge vlan del dev {port['name']} vid 1-4094 2>/dev/null || true")
        for vids in _common.ranges(vlans["tagged"]):
            opts.append(f"up bridge vlan add dev {port['name']} vid {vids}")
        for vid in vlans["untagged"]:
            flags = " pvid" if vid == vlans["pvid"] else ""
            opts.append(f"up bridge vlan add dev {port['name']} vid {vid}{flags} untagged")
        if vlans["pvid"] is not None and vlans["pvid"] in vlans["tagged"]:
            opts.append(f"up bridge vlan add dev {port['name']} vid {vlans['pvid']} pvid")
    return opts


def _routes(spec, routes):
    out = []
    for route in routes:
        cmd = f"ip route replace {_common.destination(route)}"
        if route.get("via"):
            cmd += f" via {route['via']}"
        cmd += f" dev {spec['name']}"
        if route.get("metric") is not None:
            cmd += f" metric {route['metric']}"
        out.append(f"up {cmd}")
    return out


def render_bridge(spec: dict) -> str:
    name = spec["name"]
    lines = [_common.header(spec).rstrip(), ""]
    for port in spec.get("ports", []):
        vlan = (spec.get("vlan_ports") or {}).get(port["name"])
        lines.append(f"auto {port['name']}")
        lines.append(f"iface {port['name']} inet manual")
        if vlan:
            lines.append(f"    vlan-raw-device {vlan['parent']}")
        lines.append("")
    v4, v6 = _common.split_addresses(spec.get("addresses"))
    r4, r6 = _common.split_routes(spec.get("routes"))
    lines.append(f"auto {name}")
    lines.append(f"iface {name} inet {'static' if v4 else 'manual'}")
    for address in v4:
        lines.append(f"    address {address}")
    if spec.get("gateway") and v4:
        lines.append(f"    gateway {spec['gateway']}")
    for opt in _bridge_options(spec) + _routes(spec, r4):
        lines.append(f"    {opt}")
    if spec.get("gateway") and not v4:
        lines.append(f"    up ip route replace default via {spec['gateway']} dev {name}")
    if v6 or spec.get("gateway6") or r6:
        lines.append("")
        lines.append(f"iface {name} inet6 {'static' if v6 else 'manual'}")
        for address in v6:
            lines.append(f"    address {address}")
        if spec.get("gateway6") and v6:
            lines.append(f"    gateway {spec['gateway6']}")
        if v6:
            lines.append("    dad-attempts 0")
        for opt in _routes(spec, r6):
            lines.append(f"    {opt}")
    return "\n".join(lines) + "\n"


def disable_ports(text: Optional[str], ports: Iterable[str]) -> Optional[str]:
    """Comment out the stanzas of ``ports`` in the main interfaces file (idempotent)."""
    if text is None:
        return None
    out, in_stanza = [], False
    ports = set(ports)
    for line in text.splitlines():
        stripped = line.strip()
        words = stripped.split()
        if _STANZA.match(stripped):
            in_stanza = False
            if words[0] == "iface" and len(words) > 1 and words[1] in ports:
                in_stanza = True
                out.append(MARK + line)
                continue
            if (words[0] == "auto" or words[0].startswith("allow-")) and any(
                w in ports for w in words[1:]
            ):
                keep = [w for w in words[1:] if w not in ports]
                out.append(MARK + line)
                if keep:
                    out.append(" ".join([words[0]] + keep))
                continue
            out.append(line)
            continue
        if in_stanza and stripped and not stripped.startswith("#"):
            out.append(MARK + line)
            continue
        out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def render(spec: dict, read: Callable[[str], Optional[str]]) -> dict[str, str]:
    files = {path(spec["name"]): render_bridge(spec)}
    main = read(MAIN)
    ports = [p["name"] for p in spec.get("ports", [])]
    if main is not None and ports:
        changed = disable_ports(main, ports)
        if changed is not None and changed != main:
            files[MAIN] = changed
    return files
