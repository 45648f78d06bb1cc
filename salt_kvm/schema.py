"""The ``kvm`` pillar: its schema and validation with exact error paths.

Every key is known, every value typed; unknown keys are rejected with a
suggestion; each error names its path
(``kvm:pools:default:volumes:ubuntu.qcow2:size: '20X' is not a size``).
:func:`validate_pillar` returns the normalised tree (sizes in bytes, durations
in seconds, ports as dicts) or raises :class:`~salt_kvm.errors.InvalidInput`
listing every error found. The state modules validate their arguments with the
same record schemas (:func:`validate`), so a bad value is refused the same way
whether it comes from pillar or from an SLS.
"""

import difflib
import ipaddress
import re

from salt_kvm import units
from salt_kvm.errors import InvalidInput

_INVALID = object()


class Errors(list):
    def add(self, path, message):
        self.append((path, message))


def _join(path, key):
    return f"{path}:{key}" if path else str(key)


def _show(value):
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits cannot be shown
        text = f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


class Field:
    """A typed value. ``check`` returns the normalised value or ``_INVALID``."""

    def __init__(self, default=None, doc=""):
        self.default = default
        self.doc = doc

    def check(self, value, path, errors):  # pragma: no cover - abstract
        raise NotImplementedError


class Any(Field):
    def check(self, value, path, errors):
        return value


class Bool(Field):
    def check(self, value, path, errors):
        if isinstance(value, bool):
            return value
        errors.add(path, f"{_show(value)} is not true or false")
        return _INVALID


class Int(Field):
    def __init__(self, minimum=None, maximum=None, **kw):
        super().__init__(**kw)
        self.minimum, self.maximum = minimum, maximum

    def check(self, value, path, errors):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
                value = int(value)
            else:
                errors.add(path, f"{_show(value)} is not a whole number")
                return _INVALID
        if (
            self.minimum is not None
            and value < self.minimum
            or self.maximum is not None
            and value > self.maximum
        ):
            errors.add(path, f"{_show(value)} is out of range {self.minimum}-{self.maximum}")
            return _INVALID
        return value


class Number(Int):
    """A whole or decimal number (STP timers in seconds, ...)."""

    def check(self, value, path, errors):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.add(path, f"{_show(value)} is not a number")
            return _INVALID
        if (
            value != value
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            errors.add(path, f"{value} is out of range {self.minimum}-{self.maximum}")
            return _INVALID
        return value


class Str(Field):
    def __init__(self, pattern=None, max_len=255, what="a valid value", min_len=1, **kw):
        super().__init__(**kw)
        self.pattern = re.compile(pattern) if pattern else None
        self.max_len, self.min_len, self.what = max_len, min_len, what

    def check(self, value, path, errors):
        if not isinstance(value, str):
            errors.add(path, f"{_show(value)} is not a string")
            return _INVALID
        if len(value) < self.min_len:
            errors.add(path, "must not be empty")
            return _INVALID
        if self.max_len and len(value) > self.max_len:
            errors.add(path, f"{_show(value)} is longer than {self.max_len} characters")
            return _INVALID
        if self.pattern and not self.pattern.fullmatch(value):
            errors.add(path, f"{_show(value)} is not {self.what}")
            return _INVALID
        return value


class Secret(Str):
    """A password or key: checked like :class:`Str`, but an error never shows the value."""

    def check(self, value, path, errors):
        found = Errors()
        result = super().check(value, path, found)
        if found:
            errors.add(
                path,
                f"is not a valid secret (a string of {self.min_len}-{self.max_len} characters; the value is not shown)",
            )
        return result


class Enum(Field):
    def __init__(self, *choices, **kw):
        super().__init__(**kw)
        self.choices = choices

    def check(self, value, path, errors):
        # compare by type too: 1, 0 and 1.0 are not the choices True / False
        if any(
            c is value
            if isinstance(c, bool) or isinstance(value, bool)
            else type(c) is type(value) and c == value
            for c in self.choices
        ):
            return value
        hint = _suggest(value, [c for c in self.choices if isinstance(c, str)])
        allowed = ", ".join(str(c) for c in self.choices)
        errors.add(path, f"{_show(value)} is not one of {allowed}{hint}")
        return _INVALID


class Size(Field):
    def check(self, value, path, errors):
        try:
            return units.parse_size(value)
        except ValueError as exc:
            errors.add(path, str(exc))
            return _INVALID


class Duration(Field):
    def check(self, value, path, errors):
        try:
            return units.parse_duration(value)
        except ValueError as exc:
            errors.add(path, str(exc))
            return _INVALID


class Address(Field):
    """An IP address (``version`` 4, 6 or None for either)."""

    def __init__(self, version=None, **kw):
        super().__init__(**kw)
        self.version = version

    def check(self, value, path, errors):
        try:
            addr = ipaddress.ip_address(value if isinstance(value, str) else "")
        except ValueError:
            errors.add(
                path,
                f"{_show(value)} is not an IP{'v%d' % self.version if self.version else ''} address",
            )
            return _INVALID
        if self.version and addr.version != self.version:
            errors.add(path, f"{_show(value)} is not an IPv{self.version} address")
            return _INVALID
        return str(addr)


class Interface(Address):
    """An address with its prefix (``192.0.2.10/24``), kept as given but normalised."""

    def check(self, value, path, errors):
        if not isinstance(value, str) or "/" not in value:
            errors.add(
                path, f"{_show(value)} is not an address with a prefix length (like 192.0.2.10/24)"
            )
            return _INVALID
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            errors.add(path, f"{_show(value)} is not a valid CIDR address")
            return _INVALID
        if self.version and iface.version != self.version:
            errors.add(path, f"{_show(value)} is not an IPv{self.version} address")
            return _INVALID
        return str(iface)


class Network(Address):
    """A network (``198.51.100.0/24``) or ``default``."""

    def check(self, value, path, errors):
        if value == "default":
            return value
        try:
            return str(ipaddress.ip_network(value if isinstance(value, str) else "", strict=False))
        except ValueError:
            errors.add(path, f"{_show(value)} is not a network (like 198.51.100.0/24)")
            return _INVALID


class Mac(Field):
    _RE = re.compile(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}")

    def check(self, value, path, errors):
        if not isinstance(value, str) or not self._RE.fullmatch(value):
            errors.add(path, f"{_show(value)} is not a MAC address")
            return _INVALID
        return value.lower().replace("-", ":")


class VlanList(Field):
    """VLAN ids as ``[10, '100-110']`` -> sorted unique list of ints in 1-4094."""

    def check(self, value, path, errors):
        items = value if isinstance(value, list) else [value]
        out = set()
        for i, item in enumerate(items):
            ipath = _join(path, i) if isinstance(value, list) else path
            if isinstance(item, bool):
                errors.add(ipath, f"{_show(item)} is not a VLAN id or range")
                return _INVALID
            if isinstance(item, int):
                lo = hi = item
            elif isinstance(item, str) and re.fullmatch(r"\s*\d{1,5}\s*(-\s*\d{1,5}\s*)?", item):
                parts = [int(p) for p in item.split("-")]
                lo, hi = parts[0], parts[-1]
            else:
                errors.add(ipath, f"{_show(item)} is not a VLAN id or range (like 100-110)")
                return _INVALID
            if not (1 <= lo <= hi <= 4094):
                errors.add(ipath, f"{_show(item)} is out of VLAN range 1-4094")
                return _INVALID
            out.update(range(lo, hi + 1))
        return sorted(out)


class List(Field):
    def __init__(self, item, min_len=0, unique=False, **kw):
        super().__init__(**kw)
        self.item, self.min_len, self.unique = item, min_len, unique

    def check(self, value, path, errors):
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            errors.add(path, f"{_show(value)} is not a list")
            return _INVALID
        if len(value) < self.min_len:
            errors.add(path, f"needs at least {self.min_len} item(s)")
            return _INVALID
        out, ok = [], True
        for i, item in enumerate(value):
            checked = self.item.check(item, _join(path, i), errors)
            if checked is _INVALID:
                ok = False
            out.append(checked)
        if ok and self.unique:
            seen = set()
            for i, item in enumerate(out):
                key = repr(item)
                if key in seen:
                    errors.add(_join(path, i), f"{_show(item)} is listed twice")
                    ok = False
                seen.add(key)
        return out if ok else _INVALID


class Map(Field):
    """A mapping of names (checked by ``key``) to values (checked by ``value``)."""

    def __init__(self, key, value, **kw):
        super().__init__(**kw)
        self.key, self.value = key, value

    def check(self, value, path, errors):
        if value is None:
            return {}
        if not isinstance(value, dict):
            errors.add(path, f"{_show(value)} is not a mapping")
            return _INVALID
        out, ok = {}, True
        for name, item in value.items():
            ipath = _join(path, name)
            if self.key.check(name, ipath, errors) is _INVALID:
                ok = False
                continue
            checked = self.value.check({} if item is None else item, ipath, errors)
            if checked is _INVALID:
                ok = False
            out[name] = checked
        return out if ok else _INVALID


class Record(Field):
    """A mapping with known keys. ``required`` keys must be present.

    ``check_all(record, path, errors)`` (optional) runs cross-field checks on
    the normalised record.
    """

    def __init__(self, fields, required=(), check_all=None, shorthand=None, **kw):
        super().__init__(**kw)
        self.fields = fields
        self.required = tuple(required)
        self.check_all = check_all
        #: when the value is a scalar, it is taken as ``{shorthand: value}``
        self.shorthand = shorthand
        #: per key: its description and its default as shown in the pillar reference
        #: (set with :func:`describe`; documentation only, never read by validation)
        self.docs, self.defaults = {}, {}

    def check(self, value, path, errors):
        if self.shorthand and isinstance(value, str):
            value = {self.shorthand: value}
        if not isinstance(value, dict):
            errors.add(path, f"{_show(value)} is not a mapping")
            return _INVALID
        out, ok = {}, True
        for key, item in value.items():
            ipath = _join(path, key)
            field = self.fields.get(key)
            if field is None:
                errors.add(ipath, f"unknown key {_show(key)}{_suggest(key, self.fields)}")
                ok = False
                continue
            if item is None and not isinstance(field, (Map, Record)):
                continue
            checked = field.check(item, ipath, errors)
            if checked is _INVALID:
                ok = False
            else:
                out[key] = checked
        for key in self.required:
            if key not in value or value[key] is None:
                errors.add(_join(path, key), "is required")
                ok = False
        if ok and self.check_all:
            before = len(errors)
            self.check_all(out, path, errors)
            ok = len(errors) == before
        return out if ok else _INVALID


def _suggest(word, choices):
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(record, docs):
    """Attach the pillar reference's text to the keys of ``record`` and return it.

    ``docs`` maps every key to its description, or to ``(description, default)``
    where ``default`` is what applies when the key is not given. Documentation
    only: validation never reads it. docs/pillar.rst is generated from it, and
    tests/unit/test_docs_reference.py fails when a key has no description.
    """
    for key, text in docs.items():
        if key not in record.fields:
            raise KeyError(f"describe: {key!r} is not a key of this record")
        text, default = text if isinstance(text, tuple) else (text, None)
        record.docs[key] = text
        if default is not None:
            record.defaults[key] = default
    return record


# --- names -----------------------------------------------------------------

#: Linux interface names: at most 15 bytes, no '/', ':' or whitespace (the kernel's dev_valid_name),
#: and not starting with '.' or '-' (never read as a path or an option)
IFNAME = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,14}",
    max_len=15,
    what="an interface name (15 characters of A-Z a-z 0-9 _ . + -, not starting with . or -)",
)
#: libvirt object names (networks, pools, VMs)
OBJNAME = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.+-]*",
    max_len=64,
    what="a name (letters, digits, _ . + -, not starting with . or -)",
)
#: volume names: a file in the pool, never a path
VOLNAME = Str(
    r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.+:@-]*",
    max_len=200,
    what="a volume name (no '/', no '..', letters, digits, _ . + : @ -)",
)
ABSPATH = Str(r"/(?!.*(^|/)\.\.(/|$))[^\0\n]*", max_len=4096, what="an absolute path without '..'")
#: a TCP/UDP port, 1-65535
_PORT = r"(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
HOSTNAME = Str(
    r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:"
    + _PORT
    + r")?|\[[0-9a-fA-F:]+\](:"
    + _PORT
    + r")?",
    max_len=253,
    what="a host name or address, optionally with :port (1-65535)",
)
SNAPNAME = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.:+@-]*",
    max_len=128,
    what="a snapshot name (letters, digits, _ . : + @ -)",
)
PREFIX = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.:+@-]*",
    max_len=64,
    what="a name prefix (letters, digits, _ . : + @ -)",
)
SHA256 = Str(r"[0-9a-fA-F]{64}", max_len=64, what="a sha256 hex digest (64 hex digits)")


class UrlOrPath(Str):
    """A path or an http(s) URL, which may carry a password (``user:pw@host``):
    an error shows the URL with its userinfo as ``***``."""

    def check(self, value, path, errors):
        found = Errors()
        result = super().check(value, path, found)
        if found and isinstance(value, str):
            masked = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@", r"\1***@", value)
            found = Errors((p, m.replace(_show(value), _show(masked))) for p, m in found)
        errors.extend(found)
        return result


URL_OR_PATH = UrlOrPath(
    r"(https?://[^\s]+|/(?!.*(^|/)\.\.(/|$))[^\0\n]*)",
    max_len=4096,
    what="an absolute path or an http(s) URL",
)


# --- bridges ---------------------------------------------------------------


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
        "pvid": "The port VLAN id: untagged frames arriving on the port join this VLAN. It is egress-untagged unless it is also listed under ``tagged``.",
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
        "name": "The port: an existing link (``eno1``) or a VLAN sub-interface ``PARENT.VID`` (``eno1.300``), created when missing.",
        "cost": "STP path cost of the port.",
        "priority": "STP priority of the port.",
        "hairpin": "Hairpin mode: frames may leave through the port they came in on (reflective relay).",
        "vlans": "The port's VLANs ``{pvid, untagged, tagged}``; needs ``vlan_filtering: true``. The declared set is exact.",
    },
)


class Ports(Field):
    """``[eno1, {name: eno2, cost: 4}]`` or ``{eno1: {}, eno2: {cost: 4}}`` -> list of dicts."""

    def check(self, value, path, errors):
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
        "to": "The destination network (``203.0.113.0/24``), or ``default`` (IPv4's 0.0.0.0/0; write ``::/0`` for an IPv6 default route).",
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
        "tcp": "``host:port`` that must accept a TCP connection (the Salt master's ``salt.example.net:4506``, say).",
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
    stp_timers = {"forward_delay": (2, 30), "hello_time": (1, 10), "max_age": (6, 40)}
    if rec.get("stp"):
        for key, (lo, hi) in stp_timers.items():
            if key in rec and not lo <= rec[key] <= hi:
                errors.add(
                    _join(path, key), f"{rec[key]} is out of range {lo}-{hi} while stp is on"
                )


BRIDGE = Record(
    {
        "ports": Ports(),
        "stp": Bool(),
        "forward_delay": Number(0, 30),
        "hello_time": Number(1, 10),
        "max_age": Number(6, 40),
        "ageing_time": Number(0, 1000000),
        "priority": Int(0, 65535),
        "vlan_filtering": Bool(),
        "default_pvid": Int(0, 4094),
        "mcast_snooping": Bool(),
        "mtu": Int(68, 65535),
        "mac": Mac(),
        "addresses": List(Interface(), unique=True),
        "gateway": Address(4),
        "gateway6": Address(6),
        "routes": List(ROUTE),
        "persist": Enum("auto", "ifupdown", "networkd", "networkmanager", "none"),
        "probe": PROBE,
        "absent": Bool(),
        "force": Bool(),
    },
    check_all=_check_bridge,
)
describe(
    BRIDGE,
    {
        "ports": "The bridge's ports: a list of names or of mappings ``{name, cost, priority, hairpin, vlans}``, or a mapping of names to those settings. A port holding the host's addresses hands them (with its routes and MAC) to the bridge, then the probe runs. Only declared ports are managed: the taps of VMs are never removed.",
        "stp": "Spanning Tree Protocol on the bridge.",
        "forward_delay": "STP forward delay in seconds: 2-30 while ``stp`` is on; ``0`` forwards at once without STP.",
        "hello_time": "STP hello time in seconds (1-10).",
        "max_age": "STP max age in seconds (6-40).",
        "ageing_time": "Seconds a learned MAC address stays in the bridge's forwarding database.",
        "priority": "Bridge priority for the STP root election (lower wins).",
        "vlan_filtering": "Make the bridge VLAN-aware (needed for the ports' ``vlans``).",
        "default_pvid": "The PVID a new port of a VLAN-aware bridge gets (0: none).",
        "mcast_snooping": "IGMP/MLD snooping.",
        "mtu": "The bridge's MTU; ports with a smaller MTU are raised to it.",
        "mac": (
            "The bridge's MAC address.",
            "the uplink's MAC when addresses move to the bridge, else the kernel's choice",
        ),
        "addresses": (
            "The bridge's IPv4 and IPv6 addresses with prefix (``192.0.2.10/24``); when given, the list is exact.",
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
            "Write the host's own network configuration so the bridge survives a reboot; ``auto`` picks the network manager in use.",
            "none",
        ),
        "probe": (
            "What must still answer after a risky change (moving an uplink, changing a gateway); if it does not, everything is put back as it was.",
            "ping the gateway, and connect to the Salt master when it is reached through the moving uplink",
        ),
        "absent": ("Remove the bridge (``kvm.bridge_absent``).", "false"),
        "force": (
            "With ``absent``: remove the bridge even with VM taps attached or the host's addresses on it.",
            "false",
        ),
    },
)


# --- libvirt networks ------------------------------------------------------

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
    mode = rec.get("mode", "nat")
    if mode == "bridge":
        if not rec.get("bridge"):
            errors.add(
                _join(path, "bridge"),
                "is required in mode bridge (the host bridge to attach VMs to)",
            )
        for key in ("address", "address6", "dhcp", "dhcp6", "domain"):
            if key in rec:
                errors.add(
                    _join(path, key),
                    "cannot be set in mode bridge (libvirt does not manage the host bridge's addresses)",
                )
    _check_dhcp(rec, "address", "dhcp", path, errors)
    _check_dhcp(rec, "address6", "dhcp6", path, errors)
    _check_network_more(rec, mode, path, errors)


def _check_network_more(rec, mode, path, errors):
    """What libvirt would refuse, said with the pillar path (added for the networks issue)."""
    if "dev" in rec and mode not in ("nat", "route"):
        errors.add(_join(path, "dev"), f"can only be set in mode nat or route, not {mode}")
    if mode == "route" and not rec.get("address") and not rec.get("address6"):
        errors.add(
            _join(path, "address"),
            "is required in mode route (address or address6: the subnet to route)",
        )
    if "mtu" in rec and mode == "bridge":
        errors.add(
            _join(path, "mtu"),
            "cannot be set in mode bridge (set the MTU of the host bridge instead)",
        )
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
            errors.add(
                _join(path, addr_key),
                f"{iface.ip} is the network's {'broadcast' if iface.ip == net.broadcast_address and version == 4 else 'network'} address, not a host address",
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
                        "cannot be set for an IPv6 host (DHCPv6 identifies hosts by name; libvirt's rule)",
                    )
                elif not host.get("name"):
                    errors.add(hpath, "needs name (libvirt's rule for IPv6 hosts)")


NETWORK = Record(
    {
        "mode": Enum("nat", "route", "isolated", "open", "bridge"),
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
            "``nat``, ``route``, ``isolated`` (no forwarding), ``open`` (forwarding without libvirt's firewall rules) or ``bridge`` (VMs straight onto a host bridge).",
            "nat",
        ),
        "bridge": "In mode ``bridge``, the host bridge to use (required). In the other modes, the name of the bridge libvirt creates (left out: libvirt picks ``virbrN``).",
        "dev": "Modes ``nat`` and ``route`` only: forward through this host interface only.",
        "address": "The network's own IPv4 address with prefix (``198.51.100.1/24``): a host address of its subnet, which must not overlap another network.",
        "address6": "The network's own IPv6 address with prefix (``2001:db8:1::1/64``).",
        "dhcp": "The IPv4 DHCP range and static hosts (needs ``address``).",
        "dhcp6": "The IPv6 DHCP range and static hosts (needs ``address6``).",
        "domain": "The DNS domain dnsmasq serves for the network.",
        "mtu": "The MTU of the network's bridge (not in mode ``bridge``: set the host bridge's ``mtu``).",
        "autostart": "Start the network when libvirtd starts.",
        "restart": (
            "Allow the state to restart the network, when a change needs it, while running VMs are attached.",
            "false",
        ),
        "force": ("With ``absent``: remove the network even with running VMs attached.", "false"),
        "absent": ("Stop and undefine the network (``kvm.network_absent``).", "false"),
    },
)


# --- storage ---------------------------------------------------------------

POOL_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "rbd", "gluster")

AUTH = Record(
    {
        "type": Enum("chap", "ceph"),
        "username": Str(r"[A-Za-z0-9_.@+-]+", max_len=255, what="a user name"),
        "secret": Secret(max_len=4096),
        "secret_uuid": Str(r"[0-9a-fA-F-]{36}", what="a UUID"),
        "secret_usage": Str(max_len=255),
    },
    required=("type", "username"),
)

SOURCE = Record(
    {
        "devices": List(
            Str(r"(?!-)[^\0\n]+", max_len=4096, what="a device path or IQN (not starting with -)"),
            min_len=1,
        ),
        "dir": Str(
            r"(?!(.*/)?\.\.(/.*)?$)[^\0\n]+",
            max_len=4096,
            what="a directory path without '..' (absolute; a share name for cifs)",
        ),
        "name": Str(
            r"[A-Za-z0-9_][A-Za-z0-9_.+/-]*",
            max_len=255,
            what="a source name (VG, Ceph pool, Gluster volume)",
        ),
        "hosts": List(HOSTNAME, min_len=1),
        "format": Str(
            r"[a-z0-9]+",
            max_len=32,
            what="a source format (nfs, glusterfs, cifs, ext4, lvm2, dos, gpt, ...)",
        ),
        "initiator": Str(
            r"iqn\.[^\s]+", max_len=223, what="an iSCSI IQN (iqn.YYYY-MM.reverse.domain:name)"
        ),
        "auth": AUTH,
    }
)
describe(
    AUTH,
    {
        "type": "``chap`` (iSCSI) or ``ceph`` (rbd).",
        "username": "The user name.",
        "secret": "The secret itself, kept in a libvirt secret that salt-kvm manages; never shown in output or errors.",
        "secret_uuid": "Instead of ``secret``: a libvirt secret you manage, by UUID.",
        "secret_usage": "Instead of ``secret``: a libvirt secret you manage, by usage name.",
    },
)
describe(
    SOURCE,
    {
        "devices": "Block devices (``fs``, ``disk``, ``logical``); the target IQN for ``iscsi`` and ``iscsi-direct``.",
        "dir": "The NFS export or Gluster directory (absolute), or a CIFS share name.",
        "name": "The volume group (``logical``), Ceph pool (``rbd``) or Gluster volume (``gluster``).",
        "hosts": "The servers: ``host`` or ``host:port`` (``[2001:db8::1]:3260`` for IPv6).",
        "format": "The source's format: ``ext4``, ``xfs`` ... (``fs``), ``nfs``, ``glusterfs``, ``cifs`` (``netfs``), ``lvm2`` (``logical``), ``dos``, ``gpt`` (``disk``).",
        "initiator": "The initiator IQN of an ``iscsi-direct`` pool.",
        "auth": "Credentials: CHAP for iSCSI, cephx for rbd.",
    },
)

VOLUME = Record(
    {
        "size": Size(),
        "format": Enum("raw", "qcow2", "vmdk"),
        "backing": Str(r"[^\0\n]+", max_len=4096),
        "source": URL_OR_PATH,
        "sha256": SHA256,
        "preallocation": Enum(True, False, "off", "metadata", "falloc", "full"),
        "force": Bool(),
        "absent": Bool(),
    }
)
describe(
    VOLUME,
    {
        "size": (
            "The capacity: ``512M``, ``20G``, ``1.5T`` or bytes: ``K``/``M``/``G``/``T`` and ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024, ``KB``/``MB``/``GB``/``TB`` powers of 1000 (as in virsh). The volume grows to it; a smaller size fails unless ``force``. Required unless ``source`` or ``backing`` is given.",
            "the size of the source or backing image",
        ),
        "format": (
            "``raw``, ``qcow2`` or ``vmdk``; never changed in place (clone the volume instead).",
            "qcow2 in file pools (dir, fs, netfs, gluster), raw in the others",
        ),
        "backing": "A volume of the same pool (created first) or an absolute path: the new qcow2 volume is an overlay on it.",
        "source": "Import a local file or an http(s) URL into the volume (a password in the URL is never shown).",
        "sha256": "The sha256 the imported ``source`` must have; a mismatch removes the volume again.",
        "preallocation": (
            "``off`` (sparse), ``metadata`` (qcow2), ``falloc`` / ``full`` / ``true`` (every byte allocated now).",
            "off",
        ),
        "force": (
            "Allow a shrink, a re-import of a changed image, deleting a volume in use or backing another.",
            "false",
        ),
        "absent": (
            "Delete the volume (refused while a VM uses it or it backs another volume, unless ``force``).",
            "false",
        ),
    },
)

_POOL_NEEDS = {
    "dir": ("target",),
    "fs": ("target", "source.devices"),
    "netfs": ("target", "source.hosts", "source.dir"),
    "logical": ("source.name",),
    "disk": ("target", "source.devices"),
    "iscsi": ("target", "source.hosts", "source.devices"),
    "iscsi-direct": ("source.hosts", "source.devices", "source.initiator"),
    "rbd": ("source.hosts", "source.name"),
    "gluster": ("source.hosts", "source.name"),
}


def _check_pool(rec, path, errors):
    ptype = rec.get("type")
    if rec.get("absent"):
        return
    if ptype is None:
        errors.add(_join(path, "type"), "is required")
        return
    for need in _POOL_NEEDS.get(ptype, ()):
        if "." in need:
            sub, key = need.split(".")
            if key not in rec.get(sub, {}):
                errors.add(_join(_join(path, sub), key), f"is required for a {ptype} pool")
        elif need not in rec:
            errors.add(_join(path, need), f"is required for a {ptype} pool")
    vols = rec.get("volumes", {})
    for vname, vol in vols.items():
        vpath = _join(_join(path, "volumes"), vname)
        if vol.get("absent"):
            continue
        if "size" not in vol and "source" not in vol and "backing" not in vol:
            errors.add(_join(vpath, "size"), "is required (or give source or backing)")
        if "sha256" in vol and "source" not in vol:
            errors.add(_join(vpath, "sha256"), "needs source")
        if "source" in vol and "backing" in vol:
            errors.add(_join(vpath, "backing"), "cannot be combined with source")
        backing = vol.get("backing")
        if backing and not backing.startswith("/"):
            if backing == vname:
                errors.add(_join(vpath, "backing"), "a volume cannot back itself")
        if vol.get("format") == "raw" and backing:
            errors.add(
                _join(vpath, "backing"), "a raw volume cannot have a backing file (use qcow2)"
            )
    # backing chains within the pool must not loop
    for vname in vols:
        seen, cur = [], vname
        while cur in vols and vols[cur].get("backing") and cur not in seen:
            seen.append(cur)
            cur = vols[cur]["backing"]
        if cur in seen:
            errors.add(
                _join(_join(_join(path, "volumes"), vname), "backing"),
                "backing chain loops: " + " -> ".join(seen + [cur]),
            )


POOL = Record(
    {
        "type": Enum(*POOL_TYPES),
        "target": ABSPATH,
        "source": SOURCE,
        "autostart": Bool(),
        "build": Enum(True, False, "force"),
        "force": Bool(),
        "purge": Bool(),
        "absent": Bool(),
        "volumes": Map(VOLNAME, VOLUME),
    },
    check_all=_check_pool,
)
describe(
    POOL,
    {
        "type": "The libvirt pool type (required unless ``absent``); what each type needs is listed below.",
        "target": "The directory (``dir``; the mount point of ``fs`` and ``netfs``) or the device directory (``/dev`` for ``disk``, ``/dev/disk/by-path`` for ``iscsi``).",
        "source": "Where the data lives; which keys each type needs is listed below.",
        "autostart": "Start the pool when libvirtd starts.",
        "build": (
            "``true`` builds what is missing (a directory, a filesystem, a disk label, a volume group) and never overwrites existing storage; ``false`` never builds; ``force`` also overwrites storage of another kind.",
            "true",
        ),
        "force": ("Allow a change of ``type`` or ``source`` (the pool is redefined).", "false"),
        "purge": ("With ``absent``: also delete the volumes and the storage.", "false"),
        "absent": ("Stop and undefine the pool; its storage stays unless ``purge``.", "false"),
        "volumes": "The pool's volumes by name (a file name in the pool, never a path); backing volumes are created first.",
    },
)


# --- snapshots -------------------------------------------------------------

RETENTION = Record(
    {
        "every": Duration(),
        "keep": Int(1, 10000),
        "prefix": PREFIX,
        "memory": Bool(),
        "external": Bool(),
        "quiesce": Bool(),
        "older_than": Duration(),
    },
    required=("every", "keep"),
)
describe(
    RETENTION,
    {
        "every": "Take a snapshot when the newest one named with ``prefix`` is older than this.",
        "keep": "How many snapshots named with ``prefix`` to keep, counting the one just taken.",
        "prefix": (
            "The managed snapshots' names start with it (then the UTC time); other snapshots are never touched.",
            "auto-",
        ),
        "memory": ("Include the RAM of a running VM.", "true"),
        "external": ("External snapshots (qcow2 overlays) instead of internal ones.", "false"),
        "quiesce": ("Freeze the guest's filesystems first (needs the QEMU guest agent).", "false"),
        "older_than": "Delete snapshots beyond ``keep`` only when they are at least this old.",
    },
)

#: the arguments of kvm.snapshot_create / snapshot_revert / snapshot_delete and
#: the snapshot_present / snapshot_absent states (``name`` is the VM)
SNAPSHOT = Record(
    {
        "snapshot": SNAPNAME,
        "memory": Bool(),
        "disk_only": Bool(),
        "external": Bool(),
        "quiesce": Bool(),
        "description": Str(r"[^\0]*", max_len=4096, what="a description"),
        "children": Bool(),
        "running": Bool(),
    }
)

#: the arguments of kvm.snapshot_prune (``keep: 0`` deletes every matching snapshot)
SNAPSHOT_PRUNE = Record(
    {"keep": Int(0, 10000), "older_than": Duration(), "prefix": PREFIX},
    required=("keep",),
)

# --- VMs ---------------------------------------------------------------------


def _check_vm_disk(rec, path, errors):
    if rec.get("device") == "cdrom":
        for key in ("size", "backing", "format"):
            if key in rec:
                errors.add(
                    _join(path, key), "cannot make a CD-ROM (a CD-ROM is an existing volume)"
                )
        return
    if "format" in rec and "size" not in rec and "backing" not in rec:
        errors.add(
            _join(path, "format"), "needs size or backing (it is the format of a new volume)"
        )
    backing = rec.get("backing")
    if backing is not None:
        if rec.get("format", "qcow2") != "qcow2":
            errors.add(
                _join(path, "format"), "must be qcow2 with backing (a copy-on-write child is qcow2)"
            )
        if backing == rec.get("volume"):
            errors.add(_join(path, "backing"), "cannot be the volume itself")


VM_DISK = Record(
    {
        "pool": OBJNAME,
        "volume": VOLNAME,
        "device": Enum("disk", "cdrom"),
        "size": Size(),
        "format": Enum("raw", "qcow2", "vmdk"),
        "backing": VOLNAME,
        "shareable": Bool(),
    },
    required=("pool", "volume"),
    check_all=_check_vm_disk,
)
describe(
    VM_DISK,
    {
        "pool": "The pool holding the volume (declared under ``kvm:pools`` or existing on the host).",
        "volume": "The volume's name in that pool.",
        "device": ("``disk`` (virtio) or ``cdrom`` (SATA, read-only).", "disk"),
        "size": (
            "Make the volume with this capacity when it does not exist (``20G``). An existing volume is never re-created or resized by the VM: one smaller than ``size`` fails the state (grow it with ``kvm.volume_resize`` or declare it under ``kvm:pools``).",
            "the volume must exist",
        ),
        "format": (
            "The format of a volume made from ``size``: ``raw``, ``qcow2`` or ``vmdk``.",
            "qcow2 in file pools, raw in the others",
        ),
        "backing": "Make the volume, when it does not exist, as a qcow2 copy-on-write child of this volume of the same pool (its size is the base's unless ``size`` says more).",
        "shareable": (
            "A disk meant to be written by several VMs at once (a cluster filesystem's disk; raw volumes). Without it, a volume another VM has as a disk is refused.",
            "false",
        ),
    },
)


def _check_nic(rec, path, errors):
    if bool(rec.get("bridge")) == bool(rec.get("network")):
        errors.add(path, "give exactly one of bridge and network")


VM_NIC = Record(
    {
        "bridge": IFNAME,
        "network": OBJNAME,
        "mac": Mac(),
        "model": Enum("virtio", "e1000", "e1000e", "rtl8139"),
        "link": Enum("up", "down"),
    },
    check_all=_check_nic,
)
describe(
    VM_NIC,
    {
        "bridge": "A host bridge (declared under ``kvm:bridges`` or existing on the host).",
        "network": "A libvirt network.",
        "mac": (
            "The NIC's MAC address; libvirt picks one (and keeps it) when not given.",
            "chosen by libvirt",
        ),
        "model": ("The NIC model the guest sees.", "virtio"),
        "link": (
            "The NIC's link state as the guest sees it (``down``: the cable pulled); changed live.",
            "up",
        ),
    },
)

VM_BOOT = Record(
    {
        "kernel": ABSPATH,
        "initrd": ABSPATH,
        "cmdline": Str(r"[^\0\n]*", max_len=4096, what="a kernel command line"),
    },
    required=("kernel",),
)
describe(
    VM_BOOT,
    {
        "kernel": "The kernel image to boot (a file on the host).",
        "initrd": "The initramfs to boot with it.",
        "cmdline": "The kernel command line (``console=ttyS0`` sends its console to the serial port).",
    },
)
VM_CONSOLE = Record({"log": Bool()})
describe(
    VM_CONSOLE,
    {
        "log": (
            "Write the serial console to ``/var/log/libvirt/qemu/<name>.console.log`` (read it with ``kvm.vm_console``).",
            "false",
        )
    },
)


class MappingOrText(Field):
    """A mapping (written as YAML) or a string used as it is: cloud-init's files."""

    def __init__(self, max_len=1024 * 1024, text=True, **kw):
        super().__init__(**kw)
        self.max_len, self.text = max_len, text

    def check(self, value, path, errors):
        if isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                errors.add(path, f"key {_show(bad[0])} is not a string")
                return _INVALID
            return value
        if self.text and isinstance(value, str):
            if len(value.encode()) > self.max_len:
                errors.add(path, f"is longer than {self.max_len} bytes")
                return _INVALID
            return value
        errors.add(
            path,
            f"{_show(type(value).__name__)} is not a mapping{' or a string' if self.text else ''}",
        )
        return _INVALID


VM_CLOUD_INIT = Record(
    {
        "user_data": MappingOrText(),
        "meta_data": MappingOrText(text=False),
        "network_config": MappingOrText(),
    }
)
describe(
    VM_CLOUD_INIT,
    {
        "user_data": (
            "cloud-init's user data: a mapping (written as ``#cloud-config`` YAML) or a string used as it is (a script, a MIME multipart).",
            "an empty ``#cloud-config``",
        ),
        "meta_data": (
            "Merged over the defaults ``instance-id: <vm>-<hash of user-data and network-config>`` and ``local-hostname: <vm>``.",
            "instance-id and local-hostname",
        ),
        "network_config": (
            "cloud-init network config (version 1 or 2) as a mapping, or a string used as it is.",
            "none (cloud-init's DHCP on the first NIC)",
        ),
    },
)


class PortOrAuto(Int):
    """A TCP port, or ``auto``."""

    def check(self, value, path, errors):
        return value if value == "auto" else super().check(value, path, errors)


def _check_graphics(rec, path, errors):
    if rec["type"] == "none":
        for key in ("password", "listen", "port"):
            if key in rec:
                errors.add(_join(path, key), "is not used with type none")
    elif rec["type"] == "vnc" and len(rec.get("password", "")) > 8:
        errors.add(
            _join(path, "password"),
            "VNC uses only the first 8 characters of a password: give at most 8",
        )


VM_GRAPHICS = Record(
    {
        "type": Enum("none", "vnc", "spice"),
        "password": Secret(max_len=64),
        "listen": Address(),
        "port": PortOrAuto(5900, 65535),
    },
    required=("type",),
    shorthand="type",
    check_all=_check_graphics,
)
describe(
    VM_GRAPHICS,
    {
        "type": "``vnc``, ``spice`` or ``none`` (no graphics device); ``graphics: none`` and ``graphics: vnc`` are short for ``{type: ...}``.",
        "password": (
            "The console's password (VNC: at most 8 characters); never shown in state output, ``vm_show`` or logs.",
            "no password",
        ),
        "listen": ("The address the console listens on.", "127.0.0.1"),
        "port": ("The TCP port, or ``auto`` (the first free one from 5900).", "auto"),
    },
)


def _check_vm(rec, path, errors):
    seen = {}
    for i, disk in enumerate(rec.get("disks", [])):
        key = (disk["pool"], disk["volume"])
        if key in seen:
            errors.add(
                _join(_join(_join(path, "disks"), i), "volume"),
                f"volume {disk['pool']}/{disk['volume']} is already disk {seen[key]} of this VM",
            )
        seen.setdefault(key, i)
    for i, disk in enumerate(rec.get("disks", [])):
        if disk.get("backing") and (disk["pool"], disk["backing"]) in seen:
            errors.add(
                _join(_join(_join(path, "disks"), i), "backing"),
                f"{disk['pool']}/{disk['backing']} is also disk {seen[(disk['pool'], disk['backing'])]} of this VM (a base is read-only under its children)",
            )
    if "max_memory" in rec and "memory" in rec and rec["memory"] > rec["max_memory"]:
        errors.add(
            _join(path, "memory"),
            f"is more than max_memory ({units.human_size(rec['max_memory'])})",
        )
    if "max_vcpus" in rec and "vcpus" in rec and rec["vcpus"] > rec["max_vcpus"]:
        errors.add(_join(path, "vcpus"), f"is more than max_vcpus ({rec['max_vcpus']})")


VM = Record(
    {
        "type": Enum("kvm", "qemu"),
        "memory": Size(),
        "max_memory": Size(),
        "vcpus": Int(1, 512),
        "max_vcpus": Int(1, 512),
        "cpu": Str(
            r"[A-Za-z0-9_.-]+", max_len=64, what="host-model, host-passthrough or a CPU model name"
        ),
        "machine": Str(r"[A-Za-z0-9_.-]+", max_len=64, what="a machine type (like pc or q35)"),
        "disks": List(VM_DISK),
        "nics": List(VM_NIC),
        "boot": VM_BOOT,
        "console": VM_CONSOLE,
        "firmware": Enum("bios", "uefi"),
        "graphics": VM_GRAPHICS,
        "cloud_init": VM_CLOUD_INIT,
        "autostart": Bool(),
        "state": Enum("running", "stopped", "paused"),
        "restart": Bool(),
        "shutdown_timeout": Duration(),
        "absent": Bool(),
        "purge": Bool(),
    },
    required=("memory", "vcpus"),
    check_all=_check_vm,
)
describe(
    VM,
    {
        "type": (
            "``kvm`` (hardware virtualisation) or ``qemu`` (software emulation, where KVM is missing).",
            "kvm where /dev/kvm exists, else qemu",
        ),
        "memory": "The VM's RAM: ``512M``, ``2G`` (binary units). Up to ``max_memory`` it changes live (the balloon); above it at a restart.",
        "max_memory": (
            "The most RAM the VM can be given without a restart (libvirt's ``<memory>``; ``memory`` is its ``<currentMemory>``).",
            "memory",
        ),
        "vcpus": "The number of virtual CPUs. Up to ``max_vcpus`` more are plugged in live; fewer are unplugged live when the guest lets them go.",
        "max_vcpus": ("The most vCPUs the VM can have without a restart.", "vcpus"),
        "cpu": ("``host-model``, ``host-passthrough`` or a named CPU model.", "libvirt's default"),
        "machine": ("The machine type (``pc``, ``q35``).", "libvirt's default"),
        "disks": "Volumes of pools as disks (``vda``, ``vdb``... in order) or CD-ROMs; a disk removed from the list is detached, its volume kept.",
        "nics": "NICs on host bridges or libvirt networks, in order.",
        "boot": "Direct kernel boot: ``kernel``, ``initrd``, ``cmdline``.",
        "console": "``log: true`` writes the serial console to a file (read it with ``kvm.vm_console``).",
        "firmware": (
            "``bios`` or ``uefi`` (OVMF, Debian's ``ovmf`` package, chosen by libvirt, Secure Boot off, NVRAM per VM); a change waits for a restart.",
            "left as it is (bios for a new VM)",
        ),
        "graphics": (
            "``none`` or ``{type: vnc|spice, password, listen, port}``; a change waits for a restart.",
            "left as it is (none for a new VM)",
        ),
        "cloud_init": (
            "A NoCloud seed ISO (``/var/lib/libvirt/salt-kvm/cloud-init/<vm>.iso``) from ``user_data``, ``meta_data``, ``network_config``, attached as a read-only CD-ROM; rewritten only when its content changes, which waits for a restart.",
            "no seed",
        ),
        "autostart": "Start the VM when the host boots.",
        "state": ("``running``, ``stopped`` or ``paused``.", "running"),
        "restart": (
            "Restart the VM (ACPI shutdown, then start) for a change that needs it; otherwise the change waits in the definition and is reported as pending.",
            "false",
        ),
        "shutdown_timeout": ("How long a restart waits for the guest to shut down.", "120s"),
        "absent": (
            "Power off and undefine the VM; its volumes are kept unless ``purge``.",
            "false",
        ),
        "purge": (
            "With ``absent``: also delete its volumes that no other VM uses and no other image is built on.",
            "false",
        ),
    },
)


def _check_vms(vms, path, errors):
    macs = {}
    for vname, vm in vms.items():
        if vm.get("absent"):
            continue
        for i, nic in enumerate(vm.get("nics", [])):
            mac = nic.get("mac")
            if mac and mac in macs:
                errors.add(
                    _join(_join(_join(_join(path, "vms"), vname), "nics"), i),
                    f"MAC {mac} is already used by VM {macs[mac]!r}",
                )
            elif mac:
                macs[mac] = vname
    users = {}
    for vname, vm in vms.items():
        if vm.get("absent"):
            continue
        for i, disk in enumerate(vm.get("disks", [])):
            if disk.get("device") == "cdrom":
                continue
            key = (disk["pool"], disk["volume"])
            if (
                key in users
                and users[key][0] != vname
                and not (disk.get("shareable") and users[key][1])
            ):
                errors.add(
                    _join(_join(_join(_join(path, "vms"), vname), "disks"), i),
                    f"volume {key[0]}/{key[1]} is already a disk of VM {users[key][0]!r} (shareable: true on both for a disk meant to be shared)",
                )
            users.setdefault(key, (vname, bool(disk.get("shareable"))))


CONNECTION = Record(
    {"uri": Str(r"[a-z0-9+]+://[^\s]*", what="a libvirt URI (like qemu:///system)")}
)
describe(
    CONNECTION,
    {
        "uri": (
            "The libvirt URI the ``kvm`` modules connect to; also settable in the minion config (read with ``config.get``).",
            "qemu:///system",
        ),
    },
)

PROGRESS = Record({"interval": Duration()})
describe(
    PROGRESS,
    {
        "interval": (
            "Seconds (or a duration like ``10s``) between two progress reports of a long import, clone, wipe or snapshot merge; also settable in the minion config (read with ``config.get``).",
            "5s",
        ),
    },
)


def _check_vm_volumes(rec, path, errors):
    """A volume a VM disk entry makes (``size``/``backing``): declared in one place only, in a
    pool this pillar does not remove, on a base it does not remove."""
    pools = rec.get("pools", {})
    for vname, vm in rec.get("vms", {}).items():
        if vm.get("absent"):
            continue
        for i, disk in enumerate(vm.get("disks", [])):
            if not (disk.get("size") or disk.get("backing")):
                continue
            dpath = _join(_join(_join(_join(path, "vms"), vname), "disks"), i)
            pool = pools.get(disk["pool"])
            if pool is None:
                continue
            if pool.get("absent"):
                errors.add(_join(dpath, "pool"), f"pool {disk['pool']!r} is declared absent")
                continue
            vols = pool.get("volumes", {})
            if disk["volume"] in vols:
                errors.add(
                    _join(dpath, "volume"),
                    f"{disk['pool']}/{disk['volume']} is also declared under kvm:pools:{disk['pool']}:volumes; declare how to make it in one place",
                )
            if disk.get("backing") in vols and vols[disk["backing"]].get("absent"):
                errors.add(
                    _join(dpath, "backing"), f"{disk['pool']}/{disk['backing']} is declared absent"
                )


def _check_pillar(rec, path, errors):
    _check_vms(rec.get("vms", {}), path, errors)
    _check_vm_volumes(rec, path, errors)
    bridges = rec.get("bridges", {})
    owner = {}
    for bname, bridge in bridges.items():
        if bridge.get("absent"):
            continue
        for i, port in enumerate(bridge.get("ports", [])):
            pname = port["name"]
            ppath = _join(_join(_join(_join(path, "bridges"), bname), "ports"), i)
            if pname in bridges:
                errors.add(ppath, f"{pname!r} is itself a bridge declared here")
            elif pname in owner:
                errors.add(ppath, f"port {pname!r} is already a port of bridge {owner[pname]!r}")
            owner.setdefault(pname, bname)
    networks = rec.get("networks", {})
    for nname, net in networks.items():
        if net.get("absent") or net.get("mode") == "bridge":
            continue
        br = net.get("bridge")
        if br and br in bridges:
            errors.add(
                _join(_join(_join(path, "networks"), nname), "bridge"),
                f"{br!r} is a host bridge declared under kvm:bridges; use mode: bridge",
            )
    for key in ("address", "address6"):
        subnets = []
        for nname, net in networks.items():
            if net.get(key) and not net.get("absent"):
                subnets.append((nname, ipaddress.ip_interface(net[key]).network))
        for i, (a, na) in enumerate(subnets):
            for b, nb in subnets[i + 1 :]:
                if na.overlaps(nb):
                    errors.add(
                        _join(_join(_join(path, "networks"), b), key),
                        f"{nb} overlaps network {a!r} ({na})",
                    )
        # libvirt refuses to start a network whose subnet is already routed to a host bridge
        for nname, net_subnet in subnets:
            for bname, bridge in bridges.items():
                if bridge.get("absent"):
                    continue
                for address in bridge.get("addresses", []):
                    if ipaddress.ip_interface(address).network.overlaps(net_subnet):
                        errors.add(
                            _join(_join(_join(path, "networks"), nname), key),
                            f"{net_subnet} overlaps {address} of bridge {bname!r}",
                        )


PILLAR = Record(
    {
        "connection": CONNECTION,
        "progress": PROGRESS,
        "bridges": Map(IFNAME, BRIDGE),
        "networks": Map(OBJNAME, NETWORK),
        "pools": Map(OBJNAME, POOL),
        "vms": Map(OBJNAME, VM),
        "snapshots": Map(OBJNAME, RETENTION),
    },
    check_all=_check_pillar,
)
describe(
    PILLAR,
    {
        "connection": "How the minion reaches libvirt.",
        "progress": "How often long work reports its progress (minion log and ``salt/kvm/progress/*`` events).",
        "bridges": "Kernel bridges by name (a Linux link name, at most 15 characters); applied first.",
        "networks": "libvirt networks by name; applied after the bridges.",
        "pools": "libvirt storage pools by name, with their volumes; applied after the networks.",
        "vms": "VMs by name, with their disks (volumes of pools) and NICs; applied after the volumes, before snapshots.",
        "snapshots": "Snapshot retention by VM name; applied last.",
    },
)


def validate(schema, value, path):
    """Check ``value`` against ``schema``; return the normalised value.

    Raise :class:`~salt_kvm.errors.InvalidInput` listing every error, each with its path.
    """
    errors = Errors()
    result = schema.check(value, path, errors)
    if errors or result is _INVALID:
        if not errors:  # pragma: no cover - defensive
            errors.add(path, "is not valid")
        (first_path, first_msg) = errors[0]
        raise InvalidInput(first_path, first_msg, list(errors))
    return result


def validate_pillar(pillar, root="kvm"):
    """Validate the whole ``kvm`` pillar tree (``None`` is an empty tree)."""
    return validate(PILLAR, {} if pillar is None else pillar, root)


def validate_args(schema, name, kwargs, name_field=None, path=None):
    """Validate a state's keyword arguments (Salt's own ``__*`` keys dropped)."""
    args = {k: v for k, v in kwargs.items() if not k.startswith("__") and v is not None}
    path = path or str(name)
    if name_field is not None:
        validate(name_field, name, path)
    return validate(schema, args, path)
