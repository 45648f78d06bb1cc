"""A fleet of "hosts" on one machine: a salt-master and minions, each minion in
its own network namespace, reaching the master over veth links.

Layout (documentation addresses only)::

    root netns                                   netns kvt-m<tag><i>
    ---------------------------------------      ----------------------
    bridge kvt-fb<tag>  <net>.<base+1>/26  ----  eth0 <net>.<base+10+i>/26
      ports kvt-v<tag><i> (veth, far end eth0)   lo
    salt-master listening on <net>.<base+1>

The master stays in the root namespace (so the test process, its ``salt``
CLI and pytest-salt-factories' event listener reach it as usual); each minion
process is started under ``ip netns exec`` (:class:`NetnsMinion`), so kernel
bridges it makes live in its own namespace, as on a separate host. libvirtd is
shared (it lives in the root namespace), so libvirt objects of different
minions need distinct names: every name starts with :attr:`FleetNet.prefix`.
"""

import contextlib
import os
import shutil
import subprocess
import uuid

import attr
from saltfactories.daemons.minion import SaltMinion

from tests.support import sandbox


@attr.s(kw_only=True, slots=True)
class NetnsMinion(SaltMinion):
    """A salt-minion started inside network namespace ``netns``."""

    netns = attr.ib(default=None)

    def cmdline(self, *args):  # pylint: disable=arguments-differ
        cmdline = super().cmdline(*args)
        if self.netns:
            # `ip netns exec` switches namespace and execs: the pid stays the minion's
            cmdline = ["ip", "netns", "exec", self.netns] + cmdline
        return cmdline


#: The master's bridge lives in the ROOT namespace, so its subnet comes from
#: sandbox.ROOT_NS_RANGE (198.51.100.0/24): this machine's own network is in
#: 192.0.2.0/24 and the package mirrors answer at an address in 203.0.113.0/24.
PREFIXLEN = 26
MAX_HOSTS = 50


class FleetNet:
    """The master's bridge in the root namespace and one netns per minion host."""

    def __init__(self, tag=None, net="198.51.100", base=128):
        self.tag = tag or uuid.uuid4().hex[:4]
        #: every object of this fleet (netns, links, pools, networks, VMs, files) starts with this
        self.prefix = sandbox.register(f"{sandbox.PREFIX}f{self.tag}")
        self.bridge = f"{sandbox.PREFIX}fb{self.tag}"
        sandbox.register(f"{sandbox.PREFIX}m{self.tag}")
        sandbox.register(f"{sandbox.PREFIX}v{self.tag}")
        sandbox.register(self.bridge)
        self.net = net
        self.base = base
        self.master_ip = f"{net}.{base + 1}"
        self.hosts = []  # (netns, veth, address)

    def in_use(self):
        """Whether an address of this /26 is already on a link of the root netns (another fleet)."""
        import ipaddress  # pylint: disable=import-outside-toplevel

        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

        mine = ipaddress.ip_network(f"{self.master_ip}/{PREFIXLEN}", strict=False)
        with IPRoute() as ipr:
            for addr in ipr.get_addr(family=2):
                other = ipaddress.ip_network(
                    f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False
                )
                if other.overlaps(mine):
                    return True
        return False

    @classmethod
    def free(cls, candidates=(("198.51.100", 128), ("198.51.100", 192))):
        """A FleetNet on the first of ``candidates`` ``(net, base)`` no other fleet on this machine
        uses."""
        for net, base in candidates:
            fleet = cls(net=net, base=base)
            if not fleet.in_use():
                return fleet
        raise RuntimeError(f"every candidate /{PREFIXLEN} for a test fleet is in use: {candidates}")

    def create(self):
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

        with IPRoute() as ipr:
            ipr.link("add", ifname=self.bridge, kind="bridge", br_stp_state=0, br_forward_delay=0)
            idx = ipr.link_lookup(ifname=self.bridge)[0]
            ipr.addr("add", index=idx, address=self.master_ip, prefixlen=PREFIXLEN)
            ipr.link("set", index=idx, state="up")
        return self

    def add_host(self):
        """A new host netns linked to the master's bridge; return ``(netns, address)``."""
        from pyroute2 import IPRoute, NetNS  # pylint: disable=import-outside-toplevel

        i = len(self.hosts) + 1
        if i > MAX_HOSTS:
            raise ValueError(f"at most {MAX_HOSTS} hosts per FleetNet")
        name = f"{sandbox.PREFIX}m{self.tag}{i}"
        veth = f"{sandbox.PREFIX}v{self.tag}{i}"
        address = f"{self.net}.{self.base + 10 + i}"
        with NetNS(name, flags=os.O_CREAT) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        with IPRoute() as ipr:
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": name})
            vidx = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=vidx, master=ipr.link_lookup(ifname=self.bridge)[0])
            ipr.link("set", index=vidx, state="up")
        with NetNS(name) as ns:
            idx = ns.link_lookup(ifname="eth0")[0]
            ns.addr("add", index=idx, address=address, prefixlen=PREFIXLEN)
            ns.link("set", index=idx, state="up")
        self.hosts.append((name, veth, address))
        return name, address

    def ping_master(self, netns, timeout=10):
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, "ping", "-c1", "-W2", self.master_ip],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode == 0

    def minion_overrides(self, master):
        """Config for a minion of ``master`` living in one of these namespaces."""
        return {
            "master": self.master_ip,
            "master_port": master.config["ret_port"],
            # pytest-salt-factories' event listener and log server listen on 0.0.0.0
            # in the root netns: reach them over the link too
            "pytest-minion": {
                "returner_address": {"host": self.master_ip},
                "log": {"host": self.master_ip},
            },
        }

    def remove(self):
        """Remove the namespaces, links, and every libvirt object and file named with
        :attr:`prefix`."""
        from pyroute2 import IPRoute, netns  # pylint: disable=import-outside-toplevel

        remove_objects(self.prefix)
        for name, _veth, _addr in self.hosts:
            with contextlib.suppress(Exception):
                netns.remove(name)
        with IPRoute() as ipr:
            for name in [v for _n, v, _a in self.hosts] + [self.bridge]:
                with contextlib.suppress(Exception):
                    ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
        self.hosts = []

    def __enter__(self):
        return self.create()

    def __exit__(self, *exc):
        self.remove()


def free_subnets(count, prefixlen=28, exclude=(), parents=(sandbox.ROOT_NS_RANGE,)):
    """``count`` documentation subnets no route or address of the root netns overlaps
    (libvirt networks of concurrent tests pick theirs the same way)."""
    import ipaddress  # pylint: disable=import-outside-toplevel

    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    used = [ipaddress.ip_network(e, strict=False) for e in exclude]
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            used.append(
                ipaddress.ip_network(
                    f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False
                )
            )
        for route in ipr.get_routes(family=2, table=254):
            dst = route.get_attr("RTA_DST")
            if dst:
                used.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    found = []
    for parent in parents:
        for cand in ipaddress.ip_network(parent).subnets(new_prefix=prefixlen):
            if not any(cand.overlaps(u) for u in used + found):
                found.append(cand)
                if len(found) == count:
                    return found
    raise RuntimeError(f"fewer than {count} free /{prefixlen} documentation subnets on this host")


def remove_objects(prefix):
    """Remove libvirt VMs, networks, pools and files under FILES_ROOT whose names start with
    ``prefix``."""
    import libvirt  # pylint: disable=import-outside-toplevel

    try:
        conn = sandbox.connect()
    except libvirt.libvirtError:
        return
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                sandbox.remove_vm(conn, dom.name())
        for net in conn.listAllNetworks(0):
            if net.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if net.isActive():
                        net.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    net.undefine()
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if pool.isActive():
                        pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
    finally:
        conn.close()
    if os.path.isdir(sandbox.FILES_ROOT):
        for entry in os.listdir(sandbox.FILES_ROOT):
            if entry.startswith(prefix):
                shutil.rmtree(os.path.join(sandbox.FILES_ROOT, entry), ignore_errors=True)
