"""The records of ``kvm:networks``: a libvirt network and its DHCP.

What each ``mode`` accepts and requires comes from :mod:`salt_kvm.network_modes`.
"""

from __future__ import annotations

import ipaddress

from salt_kvm import network_modes
from salt_kvm.schema.fields import (
    Address,
    Bool,
    Enum,
    Int,
    Interface,
    List,
    Mac,
    Record,
    Str,
    _join,
    describe,
)
from salt_kvm.schema.names import IFNAME

DHCP_HOST = Record(
    {
        "mac": Mac(),
        "ip": Address(),
        "name": Str(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", max_len=63, what="a host name"),
    },
    required=("ip",),
)
DHCP = Record({"start": Address(), "end": Address(), "hosts": List(DHCP_HOST)})
describe(
    DHCP_HOST,
    {
        "mac": "The MAC of the VM's NIC (IPv4 only; an IPv4 host needs ``mac`` or ``name``).",
        "ip": "The address the host gets, inside the network.",
        "name": "The host's name (an IPv6 host is identified by its name).",
    },
)
describe(
    DHCP,
    {
        "start": "The first address of the DHCP range (inside the network; give ``end`` too).",
        "end": "The last address of the DHCP range.",
        "hosts": (
            "Static hosts ``{mac, ip, name}``, changed live; when given, the list is exact.",
            "the static hosts are left as they are",
        ),
    },
)


def _check_dhcp(rec, addr_key, dhcp_key, path, errors):
    dhcp = rec.get(dhcp_key)
    if not dhcp:
        return
    address = rec.get(addr_key)
    if not address:
        errors.add(
            _join(path, dhcp_key), f"needs {addr_key} (the network's own address and prefix)"
        )
        return
    net = ipaddress.ip_interface(address).network
    start, end = dhcp.get("start"), dhcp.get("end")
    if (start is None) != (end is None):
        errors.add(_join(path, dhcp_key), "needs both start and end")
        return
    if start:
        for key in ("start", "end"):
            if ipaddress.ip_address(dhcp[key]) not in net:
                errors.add(
                    _join(_join(path, dhcp_key), key), f"{dhcp[key]} is outside the network {net}"
                )
        if ipaddress.ip_address(start).version != ipaddress.ip_address(end).version:
            errors.add(
                _join(path, dhcp_key), f"start {start} and end {end} are not of the same IP version"
            )
        elif ipaddress.ip_address(start) > ipaddress.ip_address(end):
            errors.add(_join(path, dhcp_key), f"start {start} is after end {end}")
    seen_ip, seen_mac = {}, {}
    for i, host in enumerate(dhcp.get("hosts", [])):
        hpath = _join(_join(_join(path, dhcp_key), "hosts"), i)
        if ipaddress.ip_address(host["ip"]) not in net:
            errors.add(_join(hpath, "ip"), f"{host['ip']} is outside the network {net}")
        if host["ip"] in seen_ip:
            errors.add(
                _join(hpath, "ip"), f"{host['ip']} is also given to host {seen_ip[host['ip']]}"
            )
        seen_ip[host["ip"]] = i
        if host.get("mac"):
            if host["mac"] in seen_mac:
                errors.add(
                    _join(hpath, "mac"),
                    f"{host['mac']} is also given to host {seen_mac[host['mac']]}",
                )
            seen_mac[host["mac"]] = i


def _check_network(rec, path, errors):
    mode = rec.get("mode", network_modes.DEFAULT)
    row = network_modes.get(mode)
    for key, why in row.requires:
        if not rec.get(key):
            errors.add(_join(path, key), f"is required in mode {mode} ({why})")
    for key, why in row.forbids:
        if key in rec:
            errors.add(_join(path, key), f"cannot be set in mode {mode} ({why})")
    _check_dhcp(rec, "address", "dhcp", path, errors)
    _check_dhcp(rec, "address6", "dhcp6", path, errors)
    _check_network_more(rec, mode, path, errors)


def _check_network_more(rec, mode, path, errors):
    """What libvirt would refuse, said with the pillar path (added for the networks issue)."""
    row = network_modes.get(mode)
    if "dev" in rec and not row.dev:
        errors.add(
            _join(path, "dev"),
            f"can only be set in mode {' or '.join(network_modes.WITH_DEV)}, not {mode}",
        )
    for keys, why in row.requires_any:
        if not any(rec.get(key) for key in keys):
            errors.add(_join(path, keys[0]), f"is required in mode {mode} ({why})")
    for addr_key, dhcp_key, version in (("address", "dhcp", 4), ("address6", "dhcp6", 6)):
        address = rec.get(addr_key)
        if not address:
            continue
        iface = ipaddress.ip_interface(address)
        net = iface.network
        special = set()
        if version == 4 and net.prefixlen < 31:
            special = {net.network_address, net.broadcast_address}
        elif version == 6 and net.prefixlen < 127:
            special = {net.network_address}
        if iface.ip in special:
            kind = "broadcast" if iface.ip == net.broadcast_address and version == 4 else "network"
            errors.add(
                _join(path, addr_key),
                f"{iface.ip} is the network's {kind} address, not a host address",
            )
        dhcp = rec.get(dhcp_key) or {}
        dpath = _join(path, dhcp_key)
        if dhcp.get("start") and dhcp.get("end"):
            lo, hi = ipaddress.ip_address(dhcp["start"]), ipaddress.ip_address(dhcp["end"])
            if lo.version != version or hi.version != version:
                continue
            if lo <= iface.ip <= hi:
                errors.add(dpath, f"range {lo}-{hi} overlaps the network's own address {iface.ip}")
            for addr in sorted(special):
                if lo <= addr <= hi:
                    errors.add(
                        dpath, f"range {lo}-{hi} includes {addr}, which is not a host address"
                    )
        for i, host in enumerate(dhcp.get("hosts", [])):
            hpath = _join(_join(dpath, "hosts"), i)
            if ipaddress.ip_address(host["ip"]) == iface.ip:
                errors.add(_join(hpath, "ip"), f"{host['ip']} is the network's own address")
            if version == 4 and not host.get("mac") and not host.get("name"):
                errors.add(hpath, "needs mac or name (libvirt's rule for IPv4 hosts)")
            if version == 6:
                if host.get("mac"):
                    errors.add(
                        _join(hpath, "mac"),
                        (
                            "cannot be set for an IPv6 host (DHCPv6 identifies hosts by name; "
                            "libvirt's rule)"
                        ),
                    )
                elif not host.get("name"):
                    errors.add(hpath, "needs name (libvirt's rule for IPv6 hosts)")


NETWORK = Record(
    {
        "mode": Enum(*network_modes.NAMES),
        "bridge": IFNAME,
        "dev": IFNAME,
        "address": Interface(4),
        "address6": Interface(6),
        "dhcp": DHCP,
        "dhcp6": DHCP,
        "domain": Str(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", max_len=253, what="a DNS domain"),
        "mtu": Int(68, 65535),
        "autostart": Bool(),
        "restart": Bool(),
        "force": Bool(),
        "absent": Bool(),
    },
    check_all=_check_network,
)
describe(
    NETWORK,
    {
        "mode": (
            ", ".join(f"``{m}``" for m in network_modes.NAMES)
            + "; what each mode is, needs and refuses is listed below.",
            network_modes.DEFAULT,
        ),
        "bridge": (
            "In mode ``bridge``, the host bridge to use (required). In the other modes, the name "
            "of the bridge libvirt creates (left out: libvirt picks ``virbrN``)."
        ),
        "dev": "Modes ``nat`` and ``route`` only: forward through this host interface only.",
        "address": (
            "The network's own IPv4 address with prefix (``198.51.100.1/24``): a host address of "
            "its subnet, which must not overlap another network."
        ),
        "address6": "The network's own IPv6 address with prefix (``2001:db8:1::1/64``).",
        "dhcp": "The IPv4 DHCP range and static hosts (needs ``address``).",
        "dhcp6": "The IPv6 DHCP range and static hosts (needs ``address6``).",
        "domain": "The DNS domain dnsmasq serves for the network.",
        "mtu": (
            "The MTU of the network's bridge (not in mode ``bridge``: set the host bridge's "
            "``mtu``)."
        ),
        "autostart": "Start the network when libvirtd starts.",
        "restart": (
            (
                "Allow the state to restart the network, when a change needs it, while running "
                "VMs are attached."
            ),
            "false",
        ),
        "force": ("With ``absent``: remove the network even with running VMs attached.", "false"),
        "absent": ("Stop and undefine the network (``kvm.network_absent``).", "false"),
    },
)
