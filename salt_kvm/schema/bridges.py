"""The records of ``kvm:bridges``: a bridge, its ports, routes and probe.

The bridge attributes (``stp``, ``forward_delay`` ...) come from
:mod:`salt_kvm.bridge_attrs`, one row per attribute.
"""

from __future__ import annotations

import ipaddress
import typing

from salt_kvm import bridge_attrs
from salt_kvm.schema.fields import (
    _INVALID,
    Address,
    Bool,
    Duration,
    Enum,
    Errors,
    Field,
    Int,
    Interface,
    List,
    Mac,
    Network,
    Number,
    Record,
    Str,
    VlanList,
    _join,
    _show,
    describe,
)
from salt_kvm.schema.names import _PORT, IFNAME


def _check_port_vlans(rec, path, errors):
    both = sorted(set(rec.get("tagged", [])) & set(rec.get("untagged", [])))
    if both:
        shown = ", ".join(str(v) for v in both[:5]) + (" ..." if len(both) > 5 else "")
        errors.add(
            _join(path, "untagged"), f"VLAN {shown} is both tagged and untagged on this port"
        )


PORT_VLANS = Record(
    {
        "pvid": Int(1, 4094),
        "untagged": VlanList(),
        "tagged": VlanList(),
    },
    check_all=_check_port_vlans,
)
describe(
    PORT_VLANS,
    {
        "pvid": (
            "The port VLAN id: untagged frames arriving on the port join this VLAN. It is "
            "egress-untagged unless it is also listed under ``tagged``."
        ),
        "untagged": "VLANs sent out of the port untagged: ids or ranges (``[300, 400-410]``).",
        "tagged": "VLANs carried tagged on the port (a trunk): ids or ranges (``[100-110, 200]``).",
    },
)

PORT = Record(
    {
        "name": IFNAME,
        "cost": Int(1, 65535),
        "priority": Int(0, 63),
        "hairpin": Bool(),
        "vlans": PORT_VLANS,
    },
    required=("name",),
    shorthand="name",
)
describe(
    PORT,
    {
        "name": (
            "The port: an existing link (``eno1``) or a VLAN sub-interface ``PARENT.VID`` "
            "(``eno1.300``), created when missing."
        ),
        "cost": "STP path cost of the port.",
        "priority": "STP priority of the port.",
        "hairpin": (
            "Hairpin mode: frames may leave through the port they came in on (reflective relay)."
        ),
        "vlans": (
            "The port's VLANs ``{pvid, untagged, tagged}``; needs ``vlan_filtering: true``. The "
            "declared set is exact."
        ),
    },
)


class Ports(Field):
    """``[eno1, {name: eno2, cost: 4}]`` or ``{eno1: {}, eno2: {cost: 4}}`` -> list of dicts."""

    def check(self, value: typing.Any, path: str, errors: Errors) -> typing.Any:
        if isinstance(value, dict):
            items = []
            for k, v in value.items():
                if not isinstance(v, (dict, type(None))) or (v and "name" in v and v["name"] != k):
                    errors.add(_join(path, k), f"{_show(v)} is not a mapping of port settings")
                    return _INVALID
                items.append({**(v or {}), "name": k})
            value = items
        checked = List(PORT, unique=False).check(value, path, errors)
        if checked is _INVALID:
            return _INVALID
        names = [p["name"] for p in checked]
        for i, name in enumerate(names):
            if name in names[:i]:
                errors.add(_join(path, i), f"port {name!r} is listed twice")
                return _INVALID
        return checked


def _check_route(rec, path, errors):
    """The gateway must be of the destination's IP version (``default`` is IPv4's 0.0.0.0/0)."""
    via = rec.get("via")
    if via and rec.get("to"):
        version = 4 if rec["to"] == "default" else ipaddress.ip_network(rec["to"]).version
        if ipaddress.ip_address(via).version != version:
            hint = " (write to: ::/0 for an IPv6 default route)" if rec["to"] == "default" else ""
            errors.add(
                _join(path, "via"),
                f"{via} is not an IPv{version} address like the destination {rec['to']}{hint}",
            )


ROUTE = Record(
    {"to": Network(), "via": Address(), "metric": Int(0, 2**32 - 1)},
    required=("to",),
    check_all=_check_route,
)
describe(
    ROUTE,
    {
        "to": (
            "The destination network (``203.0.113.0/24``), or ``default`` (IPv4's 0.0.0.0/0; "
            "write ``::/0`` for an IPv6 default route)."
        ),
        "via": "The gateway, of the same IP version as ``to``.",
        "metric": ("The route's metric.", "the kernel's: none for IPv4, 1024 for IPv6"),
    },
)

PROBE = Record(
    {
        "ping": Address(),
        "tcp": Str(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):" + _PORT, what="host:port (port 1-65535)"),
        "timeout": Duration(),
    }
)
describe(
    PROBE,
    {
        "ping": "An address that must answer an ICMP echo (the gateway, say).",
        "tcp": (
            "``host:port`` that must accept a TCP connection (the Salt master's "
            "``salt.example.net:4506``, say)."
        ),
        "timeout": ("The total time the probe may take before the change is rolled back.", "10s"),
    },
)


def _check_bridge(rec, path, errors):
    for key, version in (("gateway", 4), ("gateway6", 6)):
        gateway = rec.get(key)
        if gateway:
            gw = ipaddress.ip_address(gateway)
            if gw.version != version:
                errors.add(_join(path, key), f"{gateway!r} is not an IPv{version} address")
    stp_timers = {a.key: a.stp_range for a in bridge_attrs.ATTRS if a.stp_range}
    if rec.get("stp"):
        for key, (lo, hi) in stp_timers.items():
            if key in rec and not lo <= rec[key] <= hi:
                errors.add(
                    _join(path, key), f"{rec[key]} is out of range {lo}-{hi} while stp is on"
                )


def attr_field(attr: bridge_attrs.BridgeAttr) -> Field:
    """The schema field of a bridge attribute row."""
    if attr.kind == "bool":
        return Bool()
    if attr.kind == "timer":
        return Number(attr.minimum, attr.maximum)
    return Int(attr.minimum, attr.maximum)


BRIDGE = Record(
    {
        "ports": Ports(),
        # the kernel bridge attributes: one row each in salt_kvm.bridge_attrs
        **{a.key: attr_field(a) for a in bridge_attrs.ATTRS},
        "mtu": Int(68, 65535),
        "mac": Mac(),
        "addresses": List(Interface(), unique=True),
        "gateway": Address(4),
        "gateway6": Address(6),
        "routes": List(ROUTE),
        "persist": Enum("auto", *bridge_attrs.BACKENDS, "none"),
        "probe": PROBE,
        "absent": Bool(),
        "force": Bool(),
    },
    check_all=_check_bridge,
)
describe(
    BRIDGE,
    {
        **{a.key: a.doc for a in bridge_attrs.ATTRS},
        "ports": (
            "The bridge's ports: a list of names or of mappings ``{name, cost, priority, "
            "hairpin, vlans}``, or a mapping of names to those settings. A port holding the "
            "host's addresses hands them (with its routes and MAC) to the bridge, then the probe "
            "runs. Only declared ports are managed: the taps of VMs are never removed."
        ),
        "mtu": "The bridge's MTU; ports with a smaller MTU are raised to it.",
        "mac": (
            "The bridge's MAC address.",
            "the uplink's MAC when addresses move to the bridge, else the kernel's choice",
        ),
        "addresses": (
            (
                "The bridge's IPv4 and IPv6 addresses with prefix (``192.0.2.10/24``); when "
                "given, the list is exact."
            ),
            "what the bridge has plus what moved from an uplink",
        ),
        "gateway": (
            "The IPv4 default gateway through the bridge.",
            "the one moved from an uplink, if any",
        ),
        "gateway6": (
            "The IPv6 default gateway through the bridge.",
            "the one moved from an uplink, if any",
        ),
        "routes": "Extra routes ``{to, via, metric}``; when given, the list is exact.",
        "persist": (
            (
                "Write the host's own network configuration so the bridge survives a reboot; "
                "``auto`` picks the network manager in use."
            ),
            "none",
        ),
        "probe": (
            (
                "What must still answer after a risky change (moving an uplink, changing a "
                "gateway); if it does not, everything is put back as it was."
            ),
            (
                "ping the gateway, and connect to the Salt master when it is reached through the "
                "moving uplink"
            ),
        ),
        "absent": ("Remove the bridge (``kvm.bridge_absent``).", "false"),
        "force": (
            (
                "With ``absent``: remove the bridge even with VM taps attached or the host's "
                "addresses on it."
            ),
            "false",
        ),
    },
)
