"""systemd-networkd: a ``.netdev`` for the bridge and ``.network`` files.

Files are named ``10-salt-kvm-*`` so they sort before the distribution's own
(networkd uses the first ``.network`` file that matches a link): the bridge's
``.netdev`` (``[Bridge]`` timers in seconds), its ``.network`` (addresses,
gateways, routes) and one ``.network`` per port (``Bridge=``, cost,
priority, hairpin, ``[BridgeVLAN]``). A VLAN sub-interface port (``eno1.100``)
gets a ``.netdev`` of kind vlan; the parent needs ``VLAN=eno1.100`` in its own
``.network``, which is written only when no other file configures the parent.
Debian has no offline parser for these files (``networkctl`` needs the running
daemon, ``systemd-analyze verify`` does not read them), so the tests compare
golden files.
"""

from typing import Any, Callable

from salt_kvm import bridge_attrs
from salt_kvm.persist import _common

DIR = "/etc/systemd/network"


def _name(*parts):
    return f"{DIR}/10-salt-kvm-{'-'.join(parts)}"


def owned_files(name: str, listdir: Callable[[str], list[str]]) -> list[str]:
    prefix = f"10-salt-kvm-{name}"
    return [
        f"{DIR}/{f}"
        for f in listdir(DIR)
        if f == f"{prefix}.netdev" or f == f"{prefix}.network" or f.startswith(f"{prefix}-port-")
    ]


def _section(title, items):
    lines = [f"[{title}]"]
    lines.extend(f"{k}={v}" for k, v in items if v is not None)
    return lines


def _bool(value):
    return "yes" if value else "no"


def render(spec: dict, read: Any) -> dict[str, str]:
    name = spec["name"]
    head = _common.header(spec).rstrip()
    files = {}
    netdev = [head, ""] + _section(
        "NetDev",
        [
            ("Name", name),
            ("Kind", "bridge"),
            ("MACAddress", spec.get("mac")),
            ("MTUBytes", spec.get("mtu")),
        ],
    )
    bridge = [
        (how.name, value)
        for _order, _attr, how, value in bridge_attrs.persisted(
            "networkd", spec, words=("no", "yes"), timer=_common.num
        )
    ]
    if bridge:
        netdev += [""] + _section("Bridge", bridge)
    files[_name(name) + ".netdev"] = "\n".join(netdev) + "\n"

    network = [head, ""] + _section("Match", [("Name", name)]) + [""]
    net_items = [("Address", a) for a in spec.get("addresses") or []]
    net_items += [("Gateway", spec.get("gateway")), ("Gateway", spec.get("gateway6"))]
    if not spec.get("addresses"):
        net_items.append(("LinkLocalAddressing", "no"))
    net_items.append(("ConfigureWithoutCarrier", "yes"))
    network += _section("Network", net_items)
    for route in spec.get("routes") or []:
        network += [""] + _section(
            "Route",
            [
                ("Destination", _common.destination(route)),
                ("Gateway", route.get("via")),
                ("Metric", route.get("metric")),
            ],
        )
    files[_name(name) + ".network"] = "\n".join(network) + "\n"

    vlan_children: dict[str, list[str]] = {}
    for port in spec.get("ports", []):
        pname = port["name"]
        vlan = (spec.get("vlan_ports") or {}).get(pname)
        if vlan:
            vlan_children.setdefault(vlan["parent"], []).append(pname)
            dev = (
                [head, ""]
                + _section("NetDev", [("Name", pname), ("Kind", "vlan")])
                + [""]
                + _section("VLAN", [("Id", vlan["id"])])
            )
            files[_name(name, "port", pname) + ".netdev"] = "\n".join(dev) + "\n"
        lines = (
            [head, ""]
            + _section("Match", [("Name", pname)])
            + [""]
            + _section("Network", [("Bridge", name)])
        )
        port_items = [("Cost", port.get("cost")), ("Priority", port.get("priority"))]
        if "hairpin" in port:
            port_items.append(("HairPin", _bool(port["hairpin"])))
        if any(v is not None for _k, v in port_items):
            lines += [""] + _section("Bridge", port_items)
        vlans = _common.port_vlans(port)
        if vlans:
            if vlans["tagged"]:
                lines += [""] + _section(
                    "BridgeVLAN", [("VLAN", ",".join(_common.ranges(vlans["tagged"])))]
                )
            if vlans["untagged"]:
                lines += [""] + _section(
                    "BridgeVLAN", [("EgressUntagged", ",".join(_common.ranges(vlans["untagged"])))]
                )
            if vlans["pvid"] is not None:
                lines += [""] + _section("BridgeVLAN", [("PVID", vlans["pvid"])])
        files[_name(name, "port", pname) + ".network"] = "\n".join(lines) + "\n"
    for parent, children in sorted(vlan_children.items()):
        if parent in {p["name"] for p in spec.get("ports", [])}:
            continue
        lines = (
            [head, ""]
            + _section("Match", [("Name", parent)])
            + [""]
            + _section(
                "Network", [("VLAN", c) for c in sorted(children)] + [("LinkLocalAddressing", "no")]
            )
        )
        files[_name(name, "port", parent) + ".network"] = "\n".join(lines) + "\n"
    return files
