"""libvirt network modes: one row per pillar ``mode``, the single source of truth.

A row (:class:`NetworkMode`) says what a mode is in libvirt's XML (its
``<forward mode>``), whether libvirt runs its own bridge or VMs go onto a host
bridge, and which pillar keys the mode requires or refuses. The schema
(:mod:`salt_kvm.schema.networks`) checks the rules with the pillar path, the
XML model (:mod:`salt_kvm.xml.network`) and :mod:`salt_kvm.network` read the
rest, and the pillar reference lists the rows. Adding a mode is adding a row
here plus its tests (see docs/development.rst, "Adding a network mode").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class NetworkMode:
    """What one pillar ``mode`` of a libvirt network is and accepts."""

    #: the pillar's name
    name: str
    #: one line for the pillar reference
    doc: str
    #: libvirt's ``<forward mode>`` (``None``: no ``<forward>`` element)
    forward: Optional[str]
    #: VMs go straight onto an existing host bridge (libvirt manages no bridge, address
    #: or dnsmasq); otherwise libvirt creates and runs the network's own bridge
    host_bridge: bool = False
    #: ``dev`` (forward through this host interface only) is accepted
    dev: bool = False
    #: ``(key, why)``: keys the mode requires
    requires: tuple[tuple[str, str], ...] = ()
    #: ``(keys, why)``: the mode requires at least one of ``keys`` (reported at the first)
    requires_any: tuple[tuple[tuple[str, ...], str], ...] = ()
    #: ``(key, why)``: keys the mode refuses
    forbids: tuple[tuple[str, str], ...] = ()


_HOST_ADDRESSES = "libvirt does not manage the host bridge's addresses"

MODES: tuple[NetworkMode, ...] = (
    NetworkMode(
        "nat",
        "VMs reach the outside through the host's address (masquerading); the default.",
        "nat",
        dev=True,
    ),
    NetworkMode(
        "route",
        "The network's subnet is routed by the host, without NAT.",
        "route",
        dev=True,
        requires_any=((("address", "address6"), "address or address6: the subnet to route"),),
    ),
    NetworkMode("isolated", "No forwarding: VMs reach only each other and the host.", None),
    NetworkMode(
        "open",
        "Forwarding without libvirt's firewall rules (the host's own firewall decides).",
        "open",
    ),
    NetworkMode(
        "bridge",
        "VMs straight onto an existing host bridge (declared under ``kvm:bridges``).",
        "bridge",
        host_bridge=True,
        requires=(("bridge", "the host bridge to attach VMs to"),),
        forbids=(
            ("address", _HOST_ADDRESSES),
            ("address6", _HOST_ADDRESSES),
            ("dhcp", _HOST_ADDRESSES),
            ("dhcp6", _HOST_ADDRESSES),
            ("domain", _HOST_ADDRESSES),
            ("mtu", "set the MTU of the host bridge instead"),
        ),
    ),
)

#: rows by name
BY_NAME: dict[str, NetworkMode] = {m.name: m for m in MODES}
#: the mode of a network that names none (libvirt's default forward mode)
DEFAULT = "nat"


def get(name: str) -> NetworkMode:
    """The row of mode ``name`` (``KeyError`` for a mode not in the table)."""
    return BY_NAME[name]


def names(where: Optional[Callable[[NetworkMode], bool]] = None) -> tuple[str, ...]:
    """Names of the modes (those for which ``where(row)`` is true), in the table's order."""
    return tuple(m.name for m in MODES if where is None or where(m))


#: every mode the pillar accepts
NAMES = names()
#: pillar mode -> libvirt ``<forward mode>`` (``None``: no ``<forward>``)
FORWARD: dict[str, Optional[str]] = {m.name: m.forward for m in MODES}
#: modes in which libvirt runs its own bridge, addresses and dnsmasq
MANAGED = names(lambda m: not m.host_bridge)
#: modes that accept ``dev``
WITH_DEV = names(lambda m: m.dev)
