"""Reading kernel bridges over netlink (pyroute2), normalised.

One :func:`load` is one dump of a network namespace: links, addresses and
routes of the main table (and bridge VLANs when a bridge filters VLANs). Every
value comes out in the units a user writes: STP timers in seconds (the kernel
reports centiseconds, rounded through jiffies), MACs in lower case, ports
sorted by name, addresses sorted. :func:`bridge_view` turns a dump into what
``kvm.bridge_show`` returns, and :func:`same_timer` compares a declared timer
with the kernel's rounded read-back, so a re-apply is a no-op.

pyroute2 is imported inside the functions: importing this module is cheap.
``netns`` everywhere names a network namespace (``ip netns`` name, or
``None`` for the current one).
"""

import contextlib
import ipaddress
import socket

from salt_kvm.errors import KvmError

AF_BRIDGE = 7
RTEXT_FILTER_BRVLAN = 2
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTN_UNICAST = 1
IFF_UP = 0x1
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NTF_SELF = 0x2
NTF_MASTER = 0x4
IFA_F_NODAD = 0x2
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4

PORT_STATES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}

#: declared key -> (IFLA_BR_* attribute, pyroute2 keyword, kind) for bridge attributes
BRIDGE_NLA = {
    "stp": ("IFLA_BR_STP_STATE", "br_stp_state", "bool"),
    "forward_delay": ("IFLA_BR_FORWARD_DELAY", "br_forward_delay", "timer"),
    "hello_time": ("IFLA_BR_HELLO_TIME", "br_hello_time", "timer"),
    "max_age": ("IFLA_BR_MAX_AGE", "br_max_age", "timer"),
    "ageing_time": ("IFLA_BR_AGEING_TIME", "br_ageing_time", "timer"),
    "priority": ("IFLA_BR_PRIORITY", "br_priority", "int"),
    "vlan_filtering": ("IFLA_BR_VLAN_FILTERING", "br_vlan_filtering", "bool"),
    "default_pvid": ("IFLA_BR_VLAN_DEFAULT_PVID", "br_vlan_default_pvid", "int"),
    "mcast_snooping": ("IFLA_BR_MCAST_SNOOPING", "br_mcast_snooping", "bool"),
}
TIMERS = ("forward_delay", "hello_time", "max_age", "ageing_time")
#: declared key -> (IFLA_BRPORT_* attribute, pyroute2 keyword, kind) for port attributes
PORT_NLA = {
    "cost": ("IFLA_BRPORT_COST", "cost", "int"),
    "priority": ("IFLA_BRPORT_PRIORITY", "priority", "int"),
    "hairpin": ("IFLA_BRPORT_MODE", "mode", "bool"),
}


def seconds(centiseconds):
    """Kernel clock_t (1/100 s) -> seconds, as a whole number when it is one."""
    value = round(centiseconds / 100.0, 2)
    return int(value) if value == int(value) else value


def centiseconds(value):
    return int(round(float(value) * 100))


def same_timer(have, want):
    """A declared timer equals the kernel's read-back, allowing its 1/100 s rounding."""
    if have is None or want is None:
        return have == want
    return abs(centiseconds(have) - centiseconds(want)) <= 1


def mac(value):
    return value.lower().replace("-", ":") if isinstance(value, str) else value


@contextlib.contextmanager
def netlink(netns=None):
    """An ``IPRoute`` socket in ``netns`` (``None``: this namespace)."""
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    try:
        ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except Exception as exc:  # pylint: disable=broad-except
        raise KvmError(f"cannot open netlink in network namespace {netns!r}: {exc}") from None
    try:
        yield ipr
    finally:
        with contextlib.suppress(Exception):
            ipr.close()


def netlink_message(exc):
    """One line from a NetlinkError / OSError."""
    code = getattr(exc, "code", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    if isinstance(code, int) and code > 0:
        import os  # pylint: disable=import-outside-toplevel

        return f"{os.strerror(code)} (errno {code})"
    return str(exc) or repr(exc)


def _info(link):
    linkinfo = link.get_attr("IFLA_LINKINFO")
    if not linkinfo:
        return None, None, None, None
    return (
        linkinfo.get_attr("IFLA_INFO_KIND"),
        linkinfo.get_attr("IFLA_INFO_DATA"),
        linkinfo.get_attr("IFLA_INFO_SLAVE_KIND"),
        linkinfo.get_attr("IFLA_INFO_SLAVE_DATA"),
    )


def _bridge_attrs(data):
    out = {}
    for key, (nla, _kw, kind) in BRIDGE_NLA.items():
        value = data.get_attr(nla) if data is not None else None
        if value is None:
            out[key] = None
        elif kind == "bool":
            out[key] = bool(value)
        elif kind == "timer":
            out[key] = seconds(value)
        else:
            out[key] = int(value)
    if data is not None and out.get("stp") and (data.get_attr("IFLA_BR_TOPOLOGY_CHANGE") or data.get_attr("IFLA_BR_TOPOLOGY_CHANGE_DETECTED")):
        # during an STP topology change the kernel ages entries out after
        # 2 * forward_delay and reports that instead of the configured value
        out["ageing_time"] = None
        out["topology_change"] = True
    bid = data.get_attr("IFLA_BR_BRIDGE_ID") if data is not None else None
    if bid:  # pyroute2 decodes the 16-bit priority in host byte order; it is big-endian on the wire
        prio = ((bid["prio"] & 0xFF) << 8) | (bid["prio"] >> 8)
        out["id"] = f"{prio:04x}.{bid['addr'].replace(':', '')}"
    else:
        out["id"] = None
    return out


def _port_attrs(data):
    out = {}
    for key, (nla, _kw, kind) in PORT_NLA.items():
        value = data.get_attr(nla) if data is not None else None
        out[key] = None if value is None else (bool(value) if kind == "bool" else int(value))
    state = data.get_attr("IFLA_BRPORT_STATE") if data is not None else None
    out["state"] = PORT_STATES.get(state, str(state)) if state is not None else None
    return out


def vlans_from_entries(entries):
    """Kernel VLAN entries [(vid, flags)] -> ``{pvid, untagged, tagged}`` (sorted)."""
    pvid, untagged, tagged = None, set(), set()
    for vid, flags in entries:
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = vid
        (untagged if flags & BRIDGE_VLAN_INFO_UNTAGGED else tagged).add(vid)
    return {"pvid": pvid, "untagged": sorted(untagged), "tagged": sorted(tagged)}


def vlans_desired(spec):
    """Declared port VLANs -> the comparable form and the kernel entries {vid: flags}.

    The pvid is egress-untagged unless it is listed as tagged (an access port).
    """
    pvid = spec.get("pvid")
    untagged = set(spec.get("untagged") or ())
    tagged = set(spec.get("tagged") or ()) - untagged
    if pvid is not None and pvid not in tagged:
        untagged.add(pvid)
    entries = {}
    for vid in untagged:
        entries[vid] = BRIDGE_VLAN_INFO_UNTAGGED
    for vid in tagged:
        entries[vid] = 0
    if pvid is not None:
        entries[pvid] = entries.get(pvid, 0) | BRIDGE_VLAN_INFO_PVID
    return {"pvid": pvid, "untagged": sorted(untagged), "tagged": sorted(tagged)}, entries


def _vlan_entries(ipr):
    """{ifindex: [(vid, flags)]} from one AF_BRIDGE dump."""
    out = {}
    for msg in ipr.get_links(family=AF_BRIDGE, ext_mask=RTEXT_FILTER_BRVLAN):
        spec = msg.get_attr("IFLA_AF_SPEC")
        if not spec:
            continue
        entries = []
        for name, value in spec.get("attrs", []) if isinstance(spec, dict) else spec["attrs"]:
            if name == "IFLA_BRIDGE_VLAN_INFO":
                entries.append((int(value["vid"]), int(value["flags"])))
        out[msg["index"]] = entries
    return out


def _cidr(address, prefixlen):
    return str(ipaddress.ip_interface(f"{address}/{prefixlen}"))


def _route_dst(route):
    dst = route.get_attr("RTA_DST")
    if dst is None or route["dst_len"] == 0:
        return "default"
    return str(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))


def _link_entry(link, byindex):
    """One link of a dump (``byindex``: ifindex -> name, to name its master and parent)."""
    kind, data, slave_kind, slave_data = _info(link)
    master = link.get_attr("IFLA_MASTER")
    return {
        "name": link.get_attr("IFLA_IFNAME"),
        "index": link["index"],
        "kind": kind,
        "mac": mac(link.get_attr("IFLA_ADDRESS")),
        "mtu": link.get_attr("IFLA_MTU"),
        "up": bool(link["flags"] & IFF_UP),
        "master": byindex.get(master) if master else None,
        "parent": byindex.get(link.get_attr("IFLA_LINK")) if kind == "vlan" else None,
        "vlan_id": data.get_attr("IFLA_VLAN_ID") if kind == "vlan" and data is not None else None,
        "bridge": _bridge_attrs(data) if kind == "bridge" else None,
        "port": _port_attrs(slave_data) if slave_kind == "bridge" else None,
        "vlans": None,
    }


def _set_vlans(ipr, links):
    """Fill ``vlans`` of ``links`` (in place) as one full dump does."""
    if any(l["bridge"] and l["bridge"].get("vlan_filtering") for l in links.values()):
        byindex = {l["index"]: n for n, l in links.items()}
        for index, entries in _vlan_entries(ipr).items():
            name = byindex.get(index)
            if name in links:
                links[name]["vlans"] = vlans_from_entries(entries)


def _addresses(ipr, byindex):
    addresses = []
    for msg in ipr.get_addr():
        address = msg.get_attr("IFA_ADDRESS")
        if msg["family"] == socket.AF_INET:
            address = msg.get_attr("IFA_LOCAL") or address
        addresses.append(
            {
                "ifname": byindex.get(msg["index"]),
                "family": msg["family"],
                "address": address,
                "prefixlen": msg["prefixlen"],
                "cidr": _cidr(address, msg["prefixlen"]),
                "scope": msg["scope"],
                "broadcast": msg.get_attr("IFA_BROADCAST"),
            }
        )
    return addresses


def _routes(ipr, byindex):
    routes = []
    for msg in ipr.get_routes(table=RT_TABLE_MAIN):
        if msg["type"] != RTN_UNICAST or msg.get_attr("RTA_TABLE", msg["table"]) != RT_TABLE_MAIN:
            continue
        routes.append(
            {
                "family": msg["family"],
                "dst": _route_dst(msg),
                "via": msg.get_attr("RTA_GATEWAY"),
                "oif": byindex.get(msg.get_attr("RTA_OIF")),
                "metric": msg.get_attr("RTA_PRIORITY"),
                "proto": msg["proto"],
                "scope": msg["scope"],
                "prefsrc": msg.get_attr("RTA_PREFSRC"),
            }
        )
    return routes


def dump(ipr):
    """One dump of the namespace: ``{"links": {name: ...}, "addresses": [...], "routes": [...]}``."""
    raw_links = ipr.get_links()
    byindex = {l["index"]: l.get_attr("IFLA_IFNAME") for l in raw_links}
    links = {}
    for link in raw_links:
        entry = _link_entry(link, byindex)
        links[entry["name"]] = entry
    _set_vlans(ipr, links)
    return {"links": links, "addresses": _addresses(ipr, byindex), "routes": _routes(ipr, byindex)}


def refresh(ipr, host, names, addresses=False):
    """``host`` (a dump) with the links ``names`` read again; a new dump, ``host`` is not changed.

    Only what one change of a bridge can touch is read: its own link and its
    ports' (one RTM_GETLINK each), bridge VLANs when a bridge filters VLANs,
    and, with ``addresses``, the addresses and routes of the namespace.
    Names that no longer exist are dropped. Much cheaper than :func:`dump`
    for a namespace with many links, which is what a run of many bridge
    states would otherwise pay once per changed bridge.
    """
    links = dict(host["links"])
    fresh = []
    for name in sorted(set(names)):
        found = ipr.link_lookup(ifname=name)
        if not found:
            links.pop(name, None)
            continue
        fresh.extend(ipr.get_links(found[0]))
    byindex = {l["index"]: n for n, l in links.items()}
    byindex.update((l["index"], l.get_attr("IFLA_IFNAME")) for l in fresh)
    for link in fresh:
        entry = _link_entry(link, byindex)
        stale = [n for n, l in links.items() if l["index"] == entry["index"] and n != entry["name"]]
        for n in stale:  # renamed: drop the old name
            del links[n]
        links[entry["name"]] = entry
    if any(l["bridge"] and l["bridge"].get("vlan_filtering") for l in links.values()):
        links = {n: dict(l, vlans=None) for n, l in links.items()}
        _set_vlans(ipr, links)
    elif any(l["vlans"] is not None for l in links.values()):
        links = {n: dict(l, vlans=None) for n, l in links.items()}
    out = {"links": links, "addresses": host["addresses"], "routes": host["routes"]}
    if addresses:
        out["addresses"] = _addresses(ipr, byindex)
        out["routes"] = _routes(ipr, byindex)
    return out


def load(netns=None):
    with netlink(netns) as ipr:
        try:
            return dump(ipr)
        except Exception as exc:  # pylint: disable=broad-except
            raise KvmError(f"cannot read links of network namespace {netns or 'current'}: {netlink_message(exc)}") from None


def global_addresses(host, ifname):
    """The addresses of ``ifname`` that carry traffic (not link-local), sorted v4 first."""
    found = [a for a in host["addresses"] if a["ifname"] == ifname and a["scope"] == 0]
    return sorted(found, key=lambda a: (a["family"] != socket.AF_INET, ipaddress.ip_interface(a["cidr"])))


def static_routes(host, ifname):
    """Main-table routes through ``ifname`` that an address does not create by itself."""
    return [r for r in host["routes"] if r["oif"] == ifname and r["proto"] != RTPROT_KERNEL and not _is_kernel_like(r)]


def _is_kernel_like(route):
    # IPv6 routes for link-local and multicast come back with proto kernel too, but
    # be defensive about fe80::/64 created with proto boot by some tools.
    return route["family"] == socket.AF_INET6 and route["dst"] in ("fe80::/64", "ff00::/8")


def route_family(to, via=None):
    """Socket family of a declared route: ``default`` takes its gateway's (IPv4 without one)."""
    if to == "default":
        return socket.AF_INET6 if via and ":" in via else socket.AF_INET
    return socket.AF_INET6 if ":" in to else socket.AF_INET


def route_prefix(to, via=None):
    """A declared destination as a prefix: ``default`` -> ``0.0.0.0/0`` or ``::/0`` (by ``via``)."""
    if to == "default":
        return "::/0" if route_family(to, via) == socket.AF_INET6 else "0.0.0.0/0"
    return to


def route_view(route):
    out = {"to": route["dst"]}
    if route["via"]:
        out["via"] = route["via"]
    if route["metric"] is not None:
        out["metric"] = route["metric"]
    return out


def bridge_view(host, name, vms=None):
    """Everything ``kvm.bridge_show`` reports about bridge ``name`` (``None`` if absent)."""
    link = host["links"].get(name)
    if link is None or link["kind"] != "bridge":
        return None
    attrs = dict(link["bridge"])
    view = {"name": name, "id": attrs.pop("id")}
    view.update(attrs)
    view["mtu"] = link["mtu"]
    view["mac"] = link["mac"]
    view["up"] = link["up"]
    ports = []
    for port in sorted((l for l in host["links"].values() if l["master"] == name), key=lambda l: l["name"]):
        entry = {"name": port["name"]}
        entry.update(port["port"] or {})
        entry["vlans"] = port["vlans"]
        entry["kind"] = port["kind"] or "device"
        entry["mac"] = port["mac"]
        entry["mtu"] = port["mtu"]
        entry["up"] = port["up"]
        if port["kind"] == "tun":
            owner = (vms or {}).get(port["name"])
            entry["vm"] = owner["vm"] if owner else None
            entry["vm_mac"] = owner["mac"] if owner else None
        ports.append(entry)
    view["ports"] = ports
    view["addresses"] = [a["cidr"] for a in global_addresses(host, name)]
    gateway = gateway6 = None
    routes = []
    for route in static_routes(host, name):
        if route["dst"] == "default":
            if route["family"] == socket.AF_INET and gateway is None:
                gateway = route["via"]
            elif route["family"] == socket.AF_INET6 and gateway6 is None:
                gateway6 = route["via"]
            continue
        routes.append(route_view(route))
    view["gateway"] = gateway
    view["gateway6"] = gateway6
    view["routes"] = sorted(routes, key=lambda r: (r["to"], r.get("via") or "", r.get("metric") or 0))
    return view


def fdb(netns, bridge_index):
    """Raw FDB entries of one bridge: [(mac, port index, vlan, kind)]."""
    out = []
    with netlink(netns) as ipr:
        for msg in ipr.fdb("dump"):
            master = msg.get_attr("NDA_MASTER")
            if master != bridge_index and msg["ifindex"] != bridge_index:
                continue
            if msg["ifindex"] != bridge_index and not master:
                continue  # the port's own (NTF_SELF) hardware table, not the bridge's
            state = msg["state"]
            if state & NUD_PERMANENT:
                kind = "local"
            elif state & NUD_NOARP:
                kind = "static"
            else:
                kind = "learned"
            out.append((mac(msg.get_attr("NDA_LLADDR")), msg["ifindex"], msg.get_attr("NDA_VLAN"), kind))
    return out
