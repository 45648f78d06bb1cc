"""What this machine's kernel can do, for tests that skip (with the reason)
what it cannot: device-mapper, a filesystem, the iSCSI initiator's netlink,
802.1Q VLAN interfaces, bridge VLAN filtering."""

import contextlib
import functools
import os
import socket

from tests.support import sandbox

NETLINK_ISCSI = 8


def has_device_mapper():
    """The kernel's device-mapper (a /dev/mapper/control node alone is not enough)."""
    try:
        with open("/proc/misc", encoding="utf-8") as fh:
            return any(line.split()[-1] == "device-mapper" for line in fh if line.strip())
    except OSError:
        return False


def has_filesystem(name):
    with open("/proc/filesystems", encoding="utf-8") as fh:
        return any(line.split()[-1] == name for line in fh if line.strip())


def netlink_iscsi_error():
    """``None`` if the kernel's iSCSI initiator answers (NETLINK_ISCSI), else the error."""
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ISCSI).close()
    except OSError as exc:
        return str(exc)
    return None


def _makes(build):
    """Whether ``build(ns)`` (pyroute2 calls in a throwaway kvt- namespace) succeeds."""
    from pyroute2 import NetNS, netns  # pylint: disable=import-outside-toplevel

    name = sandbox.uid("p-")
    try:
        with NetNS(name, flags=os.O_CREAT) as ns:
            build(ns)
        return True
    except Exception:  # noqa: BLE001  # pylint: disable=broad-except
        return False
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)


@functools.cache
def has_8021q():
    """802.1Q VLAN interfaces (CONFIG_VLAN_8021Q)."""

    def build(ns):
        ns.link("add", ifname="kvt-v", kind="veth", peer="kvt-vp")
        ns.link(
            "add", ifname="kvt-v.5", kind="vlan", link=ns.link_lookup(ifname="kvt-v")[0], vlan_id=5
        )

    return _makes(build)


@functools.cache
def has_bridge_vlan_filtering():
    """Bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)."""
    return _makes(lambda ns: ns.link("add", ifname="kvt-probe", kind="bridge", br_vlan_filtering=1))
