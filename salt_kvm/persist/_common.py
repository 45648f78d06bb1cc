"""Helpers shared by the persistence renderers."""

import ipaddress

from salt_kvm.persist import HEADER


def header(spec, comment="#"):
    return f"{comment} {HEADER.format(name=spec['name'])}\n"


def num(value):
    """``2.0`` -> ``2``; ``0.5`` -> ``0.5``."""
    if value is None:
        return None
    value = float(value)
    return str(int(value)) if value == int(value) else f"{value:g}"


def ranges(vids):
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


def split_addresses(addresses):
    v4 = [a for a in addresses or [] if ipaddress.ip_interface(a).version == 4]
    v6 = [a for a in addresses or [] if ipaddress.ip_interface(a).version == 6]
    return v4, v6


def split_routes(routes):
    v4 = [r for r in routes or [] if ipaddress.ip_network(r["to"], strict=False).version == 4] if routes else []
    v6 = [r for r in routes or [] if ipaddress.ip_network(r["to"], strict=False).version == 6] if routes else []
    return v4, v6


def port_vlans(port):
    """Declared VLANs of a port in the comparable form (or None)."""
    if not port.get("vlans"):
        return None
    from salt_kvm.bridge_netlink import vlans_desired  # pylint: disable=import-outside-toplevel

    return vlans_desired(port["vlans"])[0]
