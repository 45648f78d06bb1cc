"""Helpers shared by the persistence renderers."""

import ipaddress
from typing import Any, Iterable, Optional

from salt_kvm.persist import HEADER


def header(spec: dict, comment: str = "#") -> str:
    return f"{comment} {HEADER.format(name=spec['name'])}\n"


def num(value: Any) -> Optional[str]:
    """``2.0`` -> ``2``; ``0.5`` -> ``0.5``."""
    if value is None:
        return None
    value = float(value)
    return str(int(value)) if value == int(value) else f"{value:g}"


def ranges(vids: Iterable[int]) -> list[str]:
    """``[10, 100, 101, 102]`` -> ``["10", "100-102"]``."""
    out, vids = [], sorted(set(vids))
    i = 0
    while i < len(vids):
        j = i
        while j + 1 < len(vids) and vids[j + 1] == vids[j] + 1:
            j += 1
        out.append(str(vids[i]) if i == j else f"{vids[i]}-{vids[j]}")
        i = j + 1
    return out


def split_addresses(addresses: Optional[list[str]]) -> tuple[list[str], list[str]]:
    v4 = [a for a in addresses or [] if ipaddress.ip_interface(a).version == 4]
    v6 = [a for a in addresses or [] if ipaddress.ip_interface(a).version == 6]
    return v4, v6


def destination(route: dict) -> str:
    """A route's destination as a prefix: ``default`` -> ``0.0.0.0/0`` or ``::/0``.

    No config tool here reads the word ``default`` for both families
    (NetworkManager keyfiles want a prefix), so every renderer writes the prefix.
    """
    to = route["to"]
    if to == "default":
        via = route.get("via")
        return "::/0" if via and ipaddress.ip_address(via).version == 6 else "0.0.0.0/0"
    return to


def split_routes(routes: Optional[list[dict]]) -> tuple[list[dict], list[dict]]:
    """Declared routes -> (IPv4 routes, IPv6 routes); ``default`` goes by its gateway's family."""
    v4: list[dict] = []
    v6: list[dict] = []
    for route in routes or []:
        (v6 if ipaddress.ip_network(destination(route), strict=False).version == 6 else v4).append(
            route
        )
    return v4, v6


def port_vlans(port: dict) -> Optional[dict]:
    """Declared VLANs of a port in the comparable form (or None)."""
    if not port.get("vlans"):
        return None
    from salt_kvm.bridge_netlink import vlans_desired  # pylint: disable=import-outside-toplevel

    return vlans_desired(port["vlans"])[0]
