"""Throwaway parts of a KVM host for tests, the demo and the benchmarks.

Every object made here is named with the ``kvt-`` prefix and removed by
:func:`sweep`, which the test session runs at its start and end (so a test that
died half-way leaves nothing behind for long). Only documentation addresses
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are used.
"""

import contextlib
import os
import shutil
import subprocess
import time
import uuid

from lxml import etree

PREFIX = "kvt-"
#: files of VMs and pools live here: libvirt's qemu user must be able to traverse it
FILES_ROOT = "/var/tmp/kvt-files"
URI = os.environ.get("KVT_URI", "qemu:///system")
#: The only documentation range tests may use in the ROOT network namespace
#: (libvirt networks, the fleet's master bridge): this machine's own network is
#: in 192.0.2.0/24 and its package mirrors answer in 203.0.113.0/24, so a route
#: to either in the root namespace would cut the host off. Inside a test's own
#: network namespace every documentation range is fine.
ROOT_NS_RANGE = "198.51.100.0/24"


#: names made by this process; :func:`sweep` with ``only_mine`` removes only these,
#: so concurrent test runs on one machine leave each other's objects alone
_MINE = set()


def register(name):
    _MINE.add(name)
    return name


def uid(kind="", length=6):
    """A unique ``kvt-`` name; ``kvt-`` + kind + hex, at most 15 chars for links."""
    return register(f"{PREFIX}{kind}{uuid.uuid4().hex[:length]}")


def _ours(name, only_mine):
    if not name or not name.startswith(PREFIX):
        return False
    return not only_mine or any(name.startswith(m) for m in _MINE)


def files_dir(name):
    """A fresh directory under :data:`FILES_ROOT` (0755), removed by :func:`sweep`."""
    os.makedirs(FILES_ROOT, mode=0o755, exist_ok=True)
    os.chmod(FILES_ROOT, 0o755)
    path = os.path.join(FILES_ROOT, name)
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def connect(uri=URI):
    import libvirt  # pylint: disable=import-outside-toplevel

    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt.open(uri)


# --- network namespaces ----------------------------------------------------


class Lan:
    """A "host" netns with a NIC ``eno1`` (a veth) whose far end is in a "LAN"
    netns holding the gateway 192.0.2.1; the host has 192.0.2.10/24 and a
    default route via the gateway, as a real hypervisor's uplink would."""

    def __init__(self, tag=None, host_addr="192.0.2.10/24", gateway="192.0.2.1/24", nic="eno1"):
        tag = tag or uuid.uuid4().hex[:6]
        self.host = register(f"{PREFIX}h-{tag}")
        self.lan = register(f"{PREFIX}l-{tag}")
        self.nic = nic
        self.host_addr = host_addr
        self.gateway = gateway.split("/")[0]
        self._gateway_cidr = gateway

    def create(self):
        from pyroute2 import NetNS, netns  # pylint: disable=import-outside-toplevel

        netns.create(self.lan)
        with NetNS(self.host, flags=os.O_CREAT) as host:
            host.link(
                "add", ifname=self.nic, kind="veth", peer={"ifname": "lan0", "net_ns_fd": self.lan}
            )
            lo = host.link_lookup(ifname="lo")[0]
            host.link("set", index=lo, state="up")
            idx = host.link_lookup(ifname=self.nic)[0]
            addr, plen = self.host_addr.split("/")
            host.addr("add", index=idx, address=addr, prefixlen=int(plen))
            host.link("set", index=idx, state="up")
        with NetNS(self.lan) as lan:
            lo = lan.link_lookup(ifname="lo")[0]
            lan.link("set", index=lo, state="up")
            idx = lan.link_lookup(ifname="lan0")[0]
            addr, plen = self._gateway_cidr.split("/")
            lan.addr("add", index=idx, address=addr, prefixlen=int(plen))
            lan.link("set", index=idx, state="up")
        with NetNS(self.host) as host:
            host.route("add", dst="default", gateway=self.gateway)
        return self

    def add_nic(self, name, peer=None):
        """Another veth NIC in the host whose far end sits in the LAN netns."""
        from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

        peer = peer or f"l{name}"[:15]
        with NetNS(self.host) as host:
            host.link("add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": self.lan})
            host.link("set", index=host.link_lookup(ifname=name)[0], state="up")
        with NetNS(self.lan) as lan:
            lan.link("set", index=lan.link_lookup(ifname=peer)[0], state="up")
        return name

    def run(self, *cmd, check=True, timeout=60, **kw):
        """Run a command inside the host namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.host, *cmd],
            check=check,
            timeout=timeout,
            capture_output=True,
            text=True,
            **kw,
        )

    def dump(self):
        """Links, addresses and routes of the host netns, comparable before/after."""
        from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

        with NetNS(self.host) as ns:
            links = sorted(
                (
                    link.get_attr("IFLA_IFNAME"),
                    link.get_attr("IFLA_ADDRESS"),
                    link.get_attr("IFLA_MTU"),
                    link.get_attr("IFLA_MASTER")
                    and ns.get_links(link.get_attr("IFLA_MASTER"))[0].get_attr("IFLA_IFNAME"),
                    link["flags"] & 1,
                )
                for link in ns.get_links()
            )
            idx = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ns.get_links()}
            addrs = sorted(
                (idx.get(a["index"]), a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ns.get_addr()
            )
            routes = sorted(
                (
                    str(r.get_attr("RTA_DST")),
                    r["dst_len"],
                    str(r.get_attr("RTA_GATEWAY")),
                    idx.get(r.get_attr("RTA_OIF")),
                    r["table"],
                )
                for r in ns.get_routes(table=254)
            )
        return {"links": links, "addresses": addrs, "routes": routes}

    def remove(self):
        from pyroute2 import netns  # pylint: disable=import-outside-toplevel

        for name in (self.host, self.lan):
            with contextlib.suppress(Exception):
                netns.remove(name)
            with contextlib.suppress(
                OSError
            ):  # salt_kvm.bridge.change_lock's file for the namespace
                os.remove(f"/run/salt-kvm/bridge-{name}.lock")

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.remove()


# --- libvirt objects -------------------------------------------------------


def domain_type():
    return "kvm" if os.path.exists("/dev/kvm") else "qemu"


def qemu_img(*args):
    return subprocess.run(
        ["qemu-img", *args], check=True, capture_output=True, text=True, timeout=120
    )


def tiny_vm_xml(
    name, disk, bridge=None, network=None, memory_mib=64, disk_format="qcow2", mac=None
):
    """A 64 MiB VM with one disk and no OS: it boots into the firmware and idles."""
    dom = etree.Element("domain", type=domain_type())
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    etree.SubElement(dom, "vcpu").text = "1"
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    etree.SubElement(os_el, "boot", dev="hd")
    etree.SubElement(dom, "on_poweroff").text = "destroy"
    etree.SubElement(dom, "on_crash").text = "destroy"
    devices = etree.SubElement(dom, "devices")
    disk_el = etree.SubElement(devices, "disk", type="file", device="disk")
    etree.SubElement(disk_el, "driver", name="qemu", type=disk_format)
    etree.SubElement(disk_el, "source", file=disk)
    etree.SubElement(disk_el, "target", dev="vda", bus="virtio")
    if bridge or network:
        iface = etree.SubElement(devices, "interface", type="bridge" if bridge else "network")
        etree.SubElement(
            iface, "source", **({"bridge": bridge} if bridge else {"network": network})
        )
        if mac:
            etree.SubElement(iface, "mac", address=mac)
        etree.SubElement(iface, "model", type="virtio")
    etree.SubElement(devices, "graphics", type="vnc", listen="127.0.0.1", autoport="yes")
    etree.SubElement(devices, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


def make_vm(
    conn,
    name=None,
    start=False,
    size="64M",
    disk_format="qcow2",
    bridge=None,
    network=None,
    mac=None,
    disk=None,
):
    """Define (and optionally start) a tiny VM; return ``(domain, disk_path)``."""
    name = name or uid("vm-")
    if disk is None:
        directory = files_dir(name)
        disk = os.path.join(directory, f"disk.{disk_format}")
        qemu_img("create", "-q", "-f", disk_format, disk, size)
    dom = conn.defineXML(
        tiny_vm_xml(name, disk, bridge=bridge, network=network, disk_format=disk_format, mac=mac)
    )
    if start:
        dom.create()
    return dom, disk


def remove_vm(conn, name):
    import libvirt  # pylint: disable=import-outside-toplevel

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    )
    flags |= getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0) | getattr(
        libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0
    )
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(flags)


def make_dir_pool(conn, name=None, start=True):
    """A running dir pool in a fresh directory; return ``(pool, path)``."""
    name = name or uid("pool-")
    path = files_dir(name)
    pool_el = etree.Element("pool", type="dir")
    etree.SubElement(pool_el, "name").text = name
    target = etree.SubElement(pool_el, "target")
    etree.SubElement(target, "path").text = path
    pool = conn.storagePoolDefineXML(etree.tostring(pool_el, encoding="unicode"), 0)
    if start:
        pool.create(0)
    return pool, path


def drop_pool(conn, name):
    """Stop and undefine the pool ``name`` if it exists (its storage stays)."""
    import libvirt  # pylint: disable=import-outside-toplevel

    with contextlib.suppress(libvirt.libvirtError):
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()


def wait_for(predicate, timeout=20.0, interval=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


# --- cleanup ---------------------------------------------------------------


def remove_named(made):
    """Remove the pools, networks, secrets and file directories called ``made`` (and only those)."""
    import libvirt  # pylint: disable=import-outside-toplevel

    try:
        conn = connect()
    except libvirt.libvirtError:
        conn = None
    for name in made:
        if conn is not None:
            for lookup in (conn.storagePoolLookupByName, conn.networkLookupByName):
                with contextlib.suppress(libvirt.libvirtError):
                    obj = lookup(name)
                    with contextlib.suppress(libvirt.libvirtError):
                        if obj.isActive():
                            obj.destroy()
                    obj.undefine()
            for secret in conn.listAllSecrets(0):
                if (secret.usageID() or "").split("/")[-1] == name:
                    with contextlib.suppress(libvirt.libvirtError):
                        secret.undefine()
        path = os.path.join(FILES_ROOT, name)
        if os.path.isdir(path):
            subprocess.run(
                ["umount", "-l", os.path.join(path, "mnt")], check=False, capture_output=True
            )
            shutil.rmtree(path, ignore_errors=True)
    if conn is not None:
        conn.close()


def sweep(uri=URI, only_mine=False):
    """Remove every ``kvt-`` VM, network, pool, secret, netns and host link, and their files.

    ``only_mine``: only those whose names this process made (see :func:`uid`).
    """
    import libvirt  # pylint: disable=import-outside-toplevel

    removed = []
    try:
        conn = connect(uri)
    except libvirt.libvirtError:
        conn = None
    if conn is not None:
        for dom in conn.listAllDomains(0):
            if _ours(dom.name(), only_mine):
                remove_vm(conn, dom.name())
                removed.append(f"vm {dom.name()}")
        for net in conn.listAllNetworks(0):
            if _ours(net.name(), only_mine):
                with contextlib.suppress(libvirt.libvirtError):
                    if net.isActive():
                        net.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    net.undefine()
                removed.append(f"network {net.name()}")
        for pool in conn.listAllStoragePools(0):
            if _ours(pool.name(), only_mine):
                with contextlib.suppress(libvirt.libvirtError):
                    if pool.isActive():
                        pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
                removed.append(f"pool {pool.name()}")
        for secret in conn.listAllSecrets(0):
            usage = secret.usageID() or ""
            if _ours(usage, only_mine) or _ours(usage.split("/")[-1], only_mine):
                with contextlib.suppress(libvirt.libvirtError):
                    secret.undefine()
                removed.append(f"secret {usage}")
        conn.close()
    try:
        from pyroute2 import IPRoute, netns  # pylint: disable=import-outside-toplevel

        for name in netns.listnetns():
            if _ours(name, only_mine):
                with contextlib.suppress(Exception):
                    netns.remove(name)
                removed.append(f"netns {name}")
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME") or ""
                if _ours(name, only_mine):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=link["index"])
                    removed.append(f"link {name}")
    except ImportError:  # pragma: no cover
        pass
    if os.path.isdir(FILES_ROOT):
        for entry in os.listdir(FILES_ROOT):
            if _ours(entry, only_mine):
                shutil.rmtree(os.path.join(FILES_ROOT, entry), ignore_errors=True)
    return removed


if __name__ == "__main__":  # python -m tests.support.sandbox: remove every kvt- object
    for line in sweep():
        print("removed", line)
