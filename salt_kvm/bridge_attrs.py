"""Kernel bridge attributes: one row per attribute, the single source of truth.

A row (:class:`BridgeAttr`) says everything salt-kvm knows about one bridge
attribute: its pillar key and what values it takes (:mod:`salt_kvm.schema.bridges`
builds the schema field and the pillar reference's text from it), its netlink
attribute (``IFLA_BR_*``: number, width, pyroute2 keyword; read and written by
:mod:`salt_kvm.bridge_netlink` and :mod:`salt_kvm.bridge`), what the kernel
means when it does not report it, and its name in each persistence back end
(:mod:`salt_kvm.persist`: ifupdown, systemd-networkd, NetworkManager).

Adding a bridge attribute is adding a row here plus its tests (see
docs/development.rst, "Adding a bridge attribute"). This module imports
nothing of salt-kvm: the schema, netlink and persistence modules read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Persisted:
    """How one persistence back end writes an attribute."""

    #: the back end's name for it (``bridge_fd``, ``ForwardDelaySec``, ``forward-delay``)
    name: str
    #: its place among the back end's bridge settings (the files keep a stable order)
    order: int
    #: ``(false, true)`` as the back end writes a boolean (default: the back end's own)
    words: Optional[tuple[str, str]] = None
    #: the value as written, when the back end's default for the kind does not fit
    format: Optional[Callable[[Any], Any]] = None
    #: ifupdown only: the option line (``{name}``, ``{value}``, ``{bridge}``)
    line: str = "{name} {value}"


@dataclass(frozen=True)
class BridgeAttr:
    """One attribute of a kernel bridge."""

    #: the pillar key (``kvm:bridges:<bridge>:<key>``)
    key: str
    #: the pillar reference's description
    doc: str
    #: ``bool``, ``timer`` (seconds in the pillar, centiseconds in netlink) or ``int``
    kind: str
    #: the netlink attribute (``IFLA_BR_*``), its number in ``IFLA_INFO_DATA`` and its width
    nla: str
    nla_type: int
    nla_width: str
    #: pyroute2's keyword for it (``ipr.link("set", ..., br_stp_state=1)``)
    pyroute2: str
    #: the persistence back ends' names
    ifupdown: Persisted
    networkd: Persisted
    networkmanager: Persisted
    #: the accepted range (``int`` and ``timer``)
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    #: the range the kernel requires while STP is on (STP timers)
    stp_range: Optional[tuple[float, float]] = None
    #: what the bridge has when the kernel does not report the attribute (a new bridge's
    #: value, and what a kernel built without the feature means by leaving it out)
    absent_default: Any = None


def _pvid_or_none(value: Any) -> Any:
    return value or "none"


ATTRS: tuple[BridgeAttr, ...] = (
    BridgeAttr(
        "stp",
        "Spanning Tree Protocol on the bridge.",
        "bool",
        "IFLA_BR_STP_STATE",
        5,
        "u32",
        "br_stp_state",
        ifupdown=Persisted("bridge_stp", 10, words=("off", "on")),
        networkd=Persisted("STP", 60),
        networkmanager=Persisted("stp", 10),
    ),
    BridgeAttr(
        "forward_delay",
        "STP forward delay in seconds: 2-30 while ``stp`` is on; ``0`` forwards at once "
        "without STP.",
        "timer",
        "IFLA_BR_FORWARD_DELAY",
        1,
        "u32",
        "br_forward_delay",
        ifupdown=Persisted("bridge_fd", 20),
        networkd=Persisted("ForwardDelaySec", 30),
        networkmanager=Persisted("forward-delay", 40),
        minimum=0,
        maximum=30,
        stp_range=(2, 30),
    ),
    BridgeAttr(
        "hello_time",
        "STP hello time in seconds (1-10).",
        "timer",
        "IFLA_BR_HELLO_TIME",
        2,
        "u32",
        "br_hello_time",
        ifupdown=Persisted("bridge_hello", 30),
        networkd=Persisted("HelloTimeSec", 10),
        networkmanager=Persisted("hello-time", 50),
        minimum=1,
        maximum=10,
        stp_range=(1, 10),
    ),
    BridgeAttr(
        "max_age",
        "STP max age in seconds (6-40).",
        "timer",
        "IFLA_BR_MAX_AGE",
        3,
        "u32",
        "br_max_age",
        ifupdown=Persisted("bridge_maxage", 40),
        networkd=Persisted("MaxAgeSec", 20),
        networkmanager=Persisted("max-age", 60),
        minimum=6,
        maximum=40,
        stp_range=(6, 40),
    ),
    BridgeAttr(
        "ageing_time",
        "Seconds a learned MAC address stays in the bridge's forwarding database.",
        "timer",
        "IFLA_BR_AGEING_TIME",
        4,
        "u32",
        "br_ageing_time",
        ifupdown=Persisted("bridge_ageing", 50),
        networkd=Persisted("AgeingTimeSec", 40),
        networkmanager=Persisted("ageing-time", 70),
        minimum=0,
        maximum=1000000,
    ),
    BridgeAttr(
        "priority",
        "Bridge priority for the STP root election (lower wins).",
        "int",
        "IFLA_BR_PRIORITY",
        6,
        "u16",
        "br_priority",
        ifupdown=Persisted("bridge_bridgeprio", 60),
        networkd=Persisted("Priority", 50),
        networkmanager=Persisted("priority", 80),
        minimum=0,
        maximum=65535,
    ),
    BridgeAttr(
        "vlan_filtering",
        "Make the bridge VLAN-aware (needed for the ports' ``vlans``).",
        "bool",
        "IFLA_BR_VLAN_FILTERING",
        7,
        "u8",
        "br_vlan_filtering",
        ifupdown=Persisted("bridge_vlan_aware", 80, words=("no", "yes")),
        networkd=Persisted("VLANFiltering", 70),
        networkmanager=Persisted("vlan-filtering", 20),
        absent_default=False,
    ),
    BridgeAttr(
        "default_pvid",
        "The PVID a new port of a VLAN-aware bridge gets (0: none).",
        "int",
        "IFLA_BR_VLAN_DEFAULT_PVID",
        39,
        "u16",
        "br_vlan_default_pvid",
        # ifupdown's bridge-utils has no option for it: written through sysfs once up
        ifupdown=Persisted(
            "default_pvid", 100, line="up echo {value} > /sys/class/net/{bridge}/bridge/{name}"
        ),
        networkd=Persisted("DefaultPVID", 80, format=_pvid_or_none),
        networkmanager=Persisted("vlan-default-pvid", 90),
        minimum=0,
        maximum=4094,
        absent_default=1,
    ),
    BridgeAttr(
        "mcast_snooping",
        "IGMP/MLD snooping.",
        "bool",
        "IFLA_BR_MCAST_SNOOPING",
        23,
        "u8",
        "br_mcast_snooping",
        ifupdown=Persisted("bridge_mcsnoop", 70, words=("0", "1")),
        networkd=Persisted("MulticastSnooping", 90),
        networkmanager=Persisted("multicast-snooping", 30),
    ),
)

#: rows by pillar key
BY_KEY: dict[str, BridgeAttr] = {a.key: a for a in ATTRS}
#: the pillar keys, in the table's order
KEYS: tuple[str, ...] = tuple(a.key for a in ATTRS)
#: the keys that are STP timers (seconds, rounded by the kernel to 1/100 s)
TIMERS: tuple[str, ...] = tuple(a.key for a in ATTRS if a.kind == "timer")
#: the persistence back ends, as named in the rows
BACKENDS = ("ifupdown", "networkd", "networkmanager")


def persisted(
    backend: str, spec: dict, *, words: tuple[str, str], timer: Callable[[Any], Any]
) -> list[tuple[int, BridgeAttr, Persisted, Any]]:
    """``[(order, attr, persisted, value)]`` of the attributes ``spec`` declares, as
    back end ``backend`` writes them, in the back end's order.

    ``words`` is the back end's ``(false, true)`` for a boolean and ``timer`` its
    way of writing seconds; a row's own ``words`` / ``format`` win over them.
    """
    out = []
    for attr in ATTRS:
        if attr.key not in spec:
            continue
        how: Persisted = getattr(attr, backend)
        value = spec[attr.key]
        if how.format is not None:
            text = how.format(value)
        elif attr.kind == "bool":
            text = (how.words or words)[bool(value)]
        elif attr.kind == "timer":
            text = timer(value)
        else:
            text = value
        out.append((how.order, attr, how, text))
    return sorted(out, key=lambda item: item[0])
