"""Reading kernel bridges over netlink (pyroute2), normalised.

One :func:`load` is one dump of a network namespace: links, addresses and
routes of the main table (and bridge VLANs when a bridge filters VLANs). Every
value comes out in the units a user writes: STP timers in seconds (the kernel
reports centiseconds, rounded through jiffies), MACs in lower case, ports
sorted by name, addresses sorted. :func:`bridge_view` turns a dump into what
``kvm.bridge_show`` returns, and :func:`same_timer` compares a declared timer
with the kernel's rounded read-back, so a re-apply is a no-op.

Reading does not need pyroute2: :func:`load` (the no-op path of every
bridge state, ``kvm.bridge_show`` and ``kvm.bridge_list``) sends its few dump
requests itself over a plain ``NETLINK_ROUTE`` socket (:class:`Reader`) and
decodes only the attributes used here, into objects shaped like pyroute2's
messages, so :func:`dump` reads either. pyroute2, whose package import alone
costs tens of milliseconds and several MB, is imported only by
:func:`netlink`, when something must change. ``netns`` everywhere names a
network namespace (``ip netns`` name or path, or ``None`` for the current one).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import threading
from typing import Any, Iterable, Iterator, Optional, Union

from salt_kvm import bridge_attrs
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

#: declared key -> (IFLA_BR_* attribute, pyroute2 keyword, kind) for bridge attributes,
#: from the rows of :mod:`salt_kvm.bridge_attrs`
BRIDGE_NLA = {a.key: (a.nla, a.pyroute2, a.kind) for a in bridge_attrs.ATTRS}
TIMERS = bridge_attrs.TIMERS
#: declared key -> (IFLA_BRPORT_* attribute, pyroute2 keyword, kind) for port attributes
PORT_NLA = {
    "cost": ("IFLA_BRPORT_COST", "cost", "int"),
    "priority": ("IFLA_BRPORT_PRIORITY", "priority", "int"),
    "hairpin": ("IFLA_BRPORT_MODE", "mode", "bool"),
}


def seconds(centiseconds: float) -> Union[int, float]:
    """Kernel clock_t (1/100 s) -> seconds, as a whole number when it is one."""
    value = round(centiseconds / 100.0, 2)
    return int(value) if value == int(value) else value


def centiseconds(value: Any) -> int:
    return int(round(float(value) * 100))


def same_timer(have: Any, want: Any) -> bool:
    """A declared timer equals the kernel's read-back, allowing its 1/100 s rounding."""
    if have is None or want is None:
        return have == want
    return abs(centiseconds(have) - centiseconds(want)) <= 1


def mac(value: Any) -> Any:
    return value.lower().replace("-", ":") if isinstance(value, str) else value


@contextlib.contextmanager
def netlink(netns: Optional[str] = None) -> Iterator[Any]:
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


def netlink_message(exc: BaseException) -> str:
    """One line from a NetlinkError / OSError."""
    code = getattr(exc, "code", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    if isinstance(code, int) and code > 0:
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


#: what a bridge has when the kernel does not report the attribute: a new
#: bridge's value, and what a kernel built without the feature (no
#: CONFIG_BRIDGE_VLAN_FILTERING) means by leaving it out
ABSENT_DEFAULTS = {
    a.key: a.absent_default for a in bridge_attrs.ATTRS if a.absent_default is not None
}


def _bridge_attrs(data):
    out = {}
    for key, (nla, _kw, kind) in BRIDGE_NLA.items():
        value = data.get_attr(nla) if data is not None else None
        if value is None:
            out[key] = ABSENT_DEFAULTS.get(key) if data is not None else None
        elif kind == "bool":
            out[key] = bool(value)
        elif kind == "timer":
            out[key] = seconds(value)
        else:
            out[key] = int(value)
    if (
        data is not None
        and out.get("stp")
        and (
            data.get_attr("IFLA_BR_TOPOLOGY_CHANGE")
            or data.get_attr("IFLA_BR_TOPOLOGY_CHANGE_DETECTED")
        )
    ):
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


def vlans_from_entries(entries: Iterable[dict]) -> dict:
    """Kernel VLAN entries [(vid, flags)] -> ``{pvid, untagged, tagged}`` (sorted)."""
    untagged: set[int] = set()
    tagged: set[int] = set()
    pvid = None
    for vid, flags in entries:
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = vid
        (untagged if flags & BRIDGE_VLAN_INFO_UNTAGGED else tagged).add(vid)
    return {"pvid": pvid, "untagged": sorted(untagged), "tagged": sorted(tagged)}


def vlans_desired(spec: dict) -> tuple[dict, dict[int, int]]:
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
    if any(link["bridge"] and link["bridge"].get("vlan_filtering") for link in links.values()):
        byindex = {link["index"]: n for n, link in links.items()}
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


def dump(ipr: Any) -> dict:
    """One dump of the namespace:
    ``{"links": {name: ...}, "addresses": [...], "routes": [...]}``."""
    raw_links = ipr.get_links()
    byindex = {link["index"]: link.get_attr("IFLA_IFNAME") for link in raw_links}
    links = {}
    for link in raw_links:
        entry = _link_entry(link, byindex)
        links[entry["name"]] = entry
    _set_vlans(ipr, links)
    return {"links": links, "addresses": _addresses(ipr, byindex), "routes": _routes(ipr, byindex)}


def refresh(reader: Reader, host: dict, names: Iterable[str], *, addresses: bool = False) -> dict:
    """``host`` (a dump) with the links ``names`` read again; a new dump, ``host`` is not changed.

    ``reader`` is a :class:`Reader`. Only what one change of a bridge can
    touch is read: its own link and its ports' (one RTM_GETLINK each), bridge VLANs
    when a bridge filters VLANs, and, with ``addresses``, the addresses and routes of
    the namespace.
    Names that no longer exist are dropped. Much cheaper than :func:`dump`
    for a namespace with many links, which is what a run of many bridge
    states would otherwise pay once per changed bridge.
    """
    links = dict(host["links"])
    fresh = []
    for name in sorted(set(names)):
        link = reader.get_link(name)
        if link is None:
            links.pop(name, None)
            continue
        fresh.append(link)
    byindex = {link["index"]: n for n, link in links.items()}
    byindex.update((link["index"], link.get_attr("IFLA_IFNAME")) for link in fresh)
    for link in fresh:
        entry = _link_entry(link, byindex)
        stale = [
            n for n, link in links.items() if link["index"] == entry["index"] and n != entry["name"]
        ]
        for n in stale:  # renamed: drop the old name
            del links[n]
        links[entry["name"]] = entry
    if any(link["bridge"] and link["bridge"].get("vlan_filtering") for link in links.values()):
        links = {n: dict(link, vlans=None) for n, link in links.items()}
        _set_vlans(reader, links)
    elif any(link["vlans"] is not None for link in links.values()):
        links = {n: dict(link, vlans=None) for n, link in links.items()}
    out = {"links": links, "addresses": host["addresses"], "routes": host["routes"]}
    if addresses:
        out["addresses"] = _addresses(reader, byindex)
        out["routes"] = _routes(reader, byindex)
    return out


@contextlib.contextmanager
def reader(netns: Optional[str] = None) -> Iterator[Reader]:
    """A :class:`Reader` in ``netns`` (``None``: this namespace); no pyroute2."""
    try:
        opened = Reader(netns)
    except OSError as exc:
        raise KvmError(f"cannot open netlink in network namespace {netns!r}: {exc}") from None
    with opened:
        yield opened


def load(netns: Optional[str] = None) -> dict:
    """One :func:`dump` of ``netns``, read with :class:`Reader` (no pyroute2)."""
    with reader(netns) as opened:
        try:
            return dump(opened)
        except Exception as exc:  # pylint: disable=broad-except
            raise KvmError(
                (
                    f"cannot read links of network namespace {netns or 'current'}: "
                    f"{netlink_message(exc)}"
                )
            ) from None


# --- a small rtnetlink reader (dumps only) -----------------------------------

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE = 18, 22, 26
IFLA_IFNAME, IFLA_EXT_MASK = 3, 29
ENODEV = 19
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"
_NLMSG = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_U16, _U32 = struct.Struct("=H"), struct.Struct("=I")
_RECV_SIZE = 1 << 16  # the kernel fills dump messages of at most 32 KiB


class Attrs(dict):
    """Decoded netlink attributes by pyroute2's names, with its ``get_attr``."""

    def get_attr(self, name: str, default: Any = None) -> Any:
        return self.get(name, default)


class Message(dict):
    """One decoded message: header fields by pyroute2's names, ``get_attr`` for attributes."""

    __slots__ = ("attrs",)

    def __init__(self, fields: dict, attrs: Attrs) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


def _u8(data):
    return data[0]


def _u16(data):
    return _U16.unpack_from(data)[0]


def _u32(data):
    return _U32.unpack_from(data)[0]


def _text(data):
    return bytes(data).split(b"\0", 1)[0].decode("utf-8", "replace")


def _l2addr(data):
    return ":".join(f"{b:02x}" for b in data)


def _bridge_id(data):
    # as pyroute2 decodes it: the priority in host byte order (see _bridge_attrs)
    return {"prio": _U16.unpack_from(data)[0], "addr": _l2addr(data[2:8])}


def _attrs(data, table):
    """``Attrs`` of the attributes in ``data`` that ``table`` ({type: (name, decode)}) knows."""
    out = Attrs()
    offset, end = 0, len(data)
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            break
        known = table.get(kind & 0x3FFF)  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if known is not None:
            out[known[0]] = known[1](data[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return out


_WIDTHS = {"u8": _u8, "u16": _u16, "u32": _u32}
#: the IFLA_BR_* attributes decoded: the table's rows, and what the reader needs besides
_BRIDGE_DATA = {
    **{a.nla_type: (a.nla, _WIDTHS[a.nla_width]) for a in bridge_attrs.ATTRS},
    11: ("IFLA_BR_BRIDGE_ID", _bridge_id),
    14: ("IFLA_BR_TOPOLOGY_CHANGE", _u8),
    15: ("IFLA_BR_TOPOLOGY_CHANGE_DETECTED", _u8),
}
_BRPORT_DATA = {
    1: ("IFLA_BRPORT_STATE", _u8),
    2: ("IFLA_BRPORT_PRIORITY", _u16),
    3: ("IFLA_BRPORT_COST", _u32),
    4: ("IFLA_BRPORT_MODE", _u8),
}
_INFO_DATA = {"bridge": _BRIDGE_DATA, "vlan": {1: ("IFLA_VLAN_ID", _u16)}}
_SLAVE_DATA = {"bridge": _BRPORT_DATA}


def _linkinfo(data):
    raw = _attrs(
        data,
        {
            1: ("kind", _text),
            2: ("data", bytes),
            4: ("slave_kind", _text),
            5: ("slave_data", bytes),
        },
    )
    out = Attrs()
    if "kind" in raw:
        out["IFLA_INFO_KIND"] = raw["kind"]
        if "data" in raw:
            out["IFLA_INFO_DATA"] = _attrs(raw["data"], _INFO_DATA.get(raw["kind"], {}))
    if "slave_kind" in raw:
        out["IFLA_INFO_SLAVE_KIND"] = raw["slave_kind"]
        if "slave_data" in raw:
            out["IFLA_INFO_SLAVE_DATA"] = _attrs(
                raw["slave_data"], _SLAVE_DATA.get(raw["slave_kind"], {})
            )
    return out


def _af_spec(data):
    entries = []
    offset, end = 0, len(data)
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            break
        if (
            kind & 0x3FFF == 2 and length >= 8
        ):  # IFLA_BRIDGE_VLAN_INFO: struct bridge_vlan_info {u16 flags; u16 vid}
            flags, vid = struct.unpack_from("=HH", data, offset + 4)
            entries.append(("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid}))
        offset += (length + 3) & ~3
    return {"attrs": entries}


_LINK = {
    1: ("IFLA_ADDRESS", _l2addr),
    3: ("IFLA_IFNAME", _text),
    4: ("IFLA_MTU", _u32),
    5: ("IFLA_LINK", _u32),
    10: ("IFLA_MASTER", _u32),
    18: ("IFLA_LINKINFO", _linkinfo),
    26: ("IFLA_AF_SPEC", _af_spec),
}


def _ip(family):
    def decode(data):
        return socket.inet_ntop(family, bytes(data))

    return decode


_ADDR = {
    family: {
        1: ("IFA_ADDRESS", _ip(family)),
        2: ("IFA_LOCAL", _ip(family)),
        4: ("IFA_BROADCAST", _ip(family)),
    }
    for family in (socket.AF_INET, socket.AF_INET6)
}
_ROUTE = {
    family: {
        1: ("RTA_DST", _ip(family)),
        4: ("RTA_OIF", _u32),
        5: ("RTA_GATEWAY", _ip(family)),
        6: ("RTA_PRIORITY", _u32),
        7: ("RTA_PREFSRC", _ip(family)),
        15: ("RTA_TABLE", _u32),
    }
    for family in (socket.AF_INET, socket.AF_INET6)
}


def _netns_path(netns):
    return netns if "/" in netns else os.path.join(NETNS_RUN_DIR, netns)


def _socket_in(netns):
    """A bound ``NETLINK_ROUTE`` socket in network namespace ``netns``.

    The socket is made by a short-lived thread that enters the namespace
    (``setns`` changes only the calling thread's namespace); a socket stays in
    the namespace it was made in.
    """
    if not netns:
        return _socket()
    path = _netns_path(netns)
    result = {}

    def enter():
        try:
            import ctypes  # pylint: disable=import-outside-toplevel

            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result["socket"] = _socket()
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=enter, name="salt-kvm-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["socket"]


def _socket():
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


def _parse_link(payload):
    family, kind, index, flags, _change = _IFINFO.unpack_from(payload)
    fields = {"family": family, "ifi_type": kind, "index": index, "flags": flags}
    return Message(fields, _attrs(payload[_IFINFO.size :], _LINK))


class DumpInterrupted(OSError):
    """The kernel changed the table during a dump (NLM_F_DUMP_INTR)."""


class Reader:
    """Dumps of links, addresses and routes over a plain netlink socket.

    Offers the three pyroute2 ``IPRoute`` methods :func:`dump` calls
    (``get_links``, ``get_addr``, ``get_routes``), returning :class:`Message`
    objects with the attributes this module reads, and ``get_link(name)``
    for :func:`refresh`.
    """

    def __init__(self, netns: Optional[str] = None) -> None:
        self.sock = _socket_in(netns)
        self.seq = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _dump(self, msg_type, body, parse, retries=3):
        for attempt in range(retries + 1):
            try:
                return list(self._request(msg_type, body, parse))
            except DumpInterrupted:
                if attempt == retries:
                    raise
        return []  # pragma: no cover

    def _send(self, msg_type, flags, body):
        self.seq += 1
        self.sock.sendto(
            _NLMSG.pack(_NLMSG.size + len(body), msg_type, NLM_F_REQUEST | flags, self.seq, 0)
            + body,
            (0, 0),
        )
        return self.seq

    def _replies(self, seq):
        """``(kind, flags, payload)`` of the kernel's answers to request ``seq``, as they arrive."""
        while True:
            data = memoryview(self.sock.recv(_RECV_SIZE))
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, flags, mseq, _pid = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    raise OSError("malformed netlink message")
                payload = data[offset + _NLMSG.size : offset + length]
                offset += (length + 3) & ~3
                if mseq == seq:
                    yield kind, flags, payload

    def _request(self, msg_type, body, parse):
        interrupted = False
        for kind, flags, payload in self._replies(self._send(msg_type, NLM_F_DUMP, body)):
            interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
            if kind == NLMSG_DONE:
                if interrupted:
                    raise DumpInterrupted("netlink dump interrupted by a concurrent change")
                return
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                continue
            msg = parse(payload)
            if msg is not None:
                yield msg

    def get_links(self, family: int = socket.AF_UNSPEC, ext_mask: int = 0) -> list[Message]:
        body = _IFINFO.pack(family, 0, 0, 0, 0)
        if ext_mask:
            body += _NLA.pack(8, IFLA_EXT_MASK) + _U32.pack(ext_mask)
        return self._dump(RTM_GETLINK, body, _parse_link)

    def get_link(self, ifname: str) -> Optional[Message]:
        """The link called ``ifname`` (one RTM_GETLINK, not a dump), ``None`` when there is none."""
        name = ifname.encode() + b"\0"
        body = (
            _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
            + _NLA.pack(4 + len(name), IFLA_IFNAME)
            + name
        )
        body += b"\0" * (-len(body) % 4)
        for kind, _flags, payload in self._replies(self._send(RTM_GETLINK, 0, body)):
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code == ENODEV:
                    return None
                raise OSError(code, os.strerror(code))
            return _parse_link(payload)
        return None  # pragma: no cover

    def get_addr(self) -> list[Message]:
        def parse(payload):
            family, prefixlen, flags, scope, index = _IFADDR.unpack_from(payload)
            table = _ADDR.get(family)
            if table is None:
                return None
            fields = {
                "family": family,
                "prefixlen": prefixlen,
                "flags": flags,
                "scope": scope,
                "index": index,
            }
            return Message(fields, _attrs(payload[_IFADDR.size :], table))

        return self._dump(RTM_GETADDR, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0), parse)

    def get_routes(self, table: Optional[int] = None) -> list[Message]:
        def parse(payload):
            family, dst_len, src_len, tos, rtable, proto, scope, rtype, flags = _RTMSG.unpack_from(
                payload
            )
            known = _ROUTE.get(family)
            if known is None:
                return None
            attrs = _attrs(payload[_RTMSG.size :], known)
            if table is not None and attrs.get("RTA_TABLE", rtable) != table:
                return None
            fields = {
                "family": family,
                "dst_len": dst_len,
                "src_len": src_len,
                "tos": tos,
                "table": rtable,
                "proto": proto,
                "scope": scope,
                "type": rtype,
                "flags": flags,
            }
            return Message(fields, attrs)

        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            out.extend(self._dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), parse))
        return out


def global_addresses(host: dict, ifname: str) -> list[dict]:
    """The addresses of ``ifname`` that carry traffic (not link-local), sorted v4 first."""
    found = [a for a in host["addresses"] if a["ifname"] == ifname and a["scope"] == 0]
    return sorted(
        found, key=lambda a: (a["family"] != socket.AF_INET, ipaddress.ip_interface(a["cidr"]))
    )


def static_routes(host: dict, ifname: str) -> list[dict]:
    """Main-table routes through ``ifname`` that an address does not create by itself."""
    return [
        r
        for r in host["routes"]
        if r["oif"] == ifname and r["proto"] != RTPROT_KERNEL and not _is_kernel_like(r)
    ]


def _is_kernel_like(route):
    # IPv6 routes for link-local and multicast come back with proto kernel too, but
    # be defensive about fe80::/64 created with proto boot by some tools.
    return route["family"] == socket.AF_INET6 and route["dst"] in ("fe80::/64", "ff00::/8")


def route_family(to: str, via: Optional[str] = None) -> int:
    """Socket family of a declared route: ``default`` takes its gateway's (IPv4 without one)."""
    if to == "default":
        return socket.AF_INET6 if via and ":" in via else socket.AF_INET
    return socket.AF_INET6 if ":" in to else socket.AF_INET


def route_prefix(to: str, via: Optional[str] = None) -> str:
    """A declared destination as a prefix: ``default`` -> ``0.0.0.0/0`` or ``::/0`` (by ``via``)."""
    if to == "default":
        return "::/0" if route_family(to, via) == socket.AF_INET6 else "0.0.0.0/0"
    return to


def route_view(route: dict) -> dict:
    out = {"to": route["dst"]}
    if route["via"]:
        out["via"] = route["via"]
    if route["metric"] is not None:
        out["metric"] = route["metric"]
    return out


def bridge_view(host: dict, name: str, *, vms: Optional[dict] = None) -> Any:  # dict or None
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
    for port in sorted(
        (link for link in host["links"].values() if link["master"] == name),
        key=lambda link: link["name"],
    ):
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
    view["routes"] = sorted(
        routes, key=lambda r: (r["to"], r.get("via") or "", r.get("metric") or 0)
    )
    return view


def fdb(netns: Optional[str], bridge_index: int) -> list:
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
            out.append(
                (mac(msg.get_attr("NDA_LLADDR")), msg["ifindex"], msg.get_attr("NDA_VLAN"), kind)
            )
    return out
