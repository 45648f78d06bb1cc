"""The sandbox in which ``tests/functional/test_docs_examples.py`` applies a pillar
example for real.

:class:`Sandbox` rewrites a pillar onto ``kvt-`` objects on this host: bridges in
a ``kvt-`` network namespace whose NIC is a veth to a "LAN" namespace holding the
gateway, addresses of libvirt networks moved into a free part of
198.51.100.0/24 (:func:`free_subnet`), pools on files, loop devices and a
one-monitor Ceph, VMs that are tiny real VMs, volume sources served from a local
file server, persisted network files in private copies of ``/etc/network`` (and
the other configuration directories) seen only by its ``salt-call``. It runs
that ``salt-call`` and removes everything it made.

:func:`limit` says why a part of a pillar cannot be applied on this host (the
kernel's limits, servers this test does not start); :class:`Env` is what the
host offers (a Ceph cluster, started once when an example needs it).
"""

import contextlib
import copy
import hashlib
import ipaddress
import json
import os
import pathlib
import random
import re
import shlex
import shutil
import subprocess
import uuid

import pytest

from salt_kvm import schema, units
from tests.support import http_servers, kernel, sandbox

#: configuration directories the persistence renderers write to: private copies during an apply
ETC_DIRS = ("/etc/network", "/etc/systemd/network", "/etc/NetworkManager")
M = 1024**2

#: where a part this kernel cannot run is run for real
KERNEL_TIER = (
    "make test-kernel runs it in Debian's kernel (tests/functional/test_real_kernel.py::{})"
)


def limit(part, spec, env):
    """Why ``part`` of a pillar cannot be applied on this host (None: it can)."""
    kind = part.split(":")[0]
    if kind == "pools" and part.endswith(":volumes"):
        if spec.get("type") == "logical" and not kernel.has_device_mapper():
            return (
                "logical volumes need device-mapper, which this kernel lacks (no device-mapper "
                "in /proc/misc); the pool itself is applied; "
                + KERNEL_TIER.format("test_lvm_logical_volumes_for_real")
            )
        return None
    if kind == "pools":
        ptype = spec.get("type")
        if ptype == "netfs":
            fmt = (spec.get("source") or {}).get("format", "nfs")
            if fmt in ("nfs", "auto", "cifs"):
                fs = "cifs" if fmt == "cifs" else "nfs"
                if not kernel.has_filesystem(fs):
                    return (
                        f"a netfs {fmt} pool cannot be started here: the kernel has no {fs} "
                        "filesystem (not in /proc/filesystems); "
                        + KERNEL_TIER.format("test_nfs_netfs_pool_for_real")
                    )
                return f"no {fs} server is started by this test"
            return (
                f"a netfs {fmt} pool needs its server (tested for real in "
                "test_pools_real_backends.py)"
            )
        if ptype == "logical":
            return (
                None if shutil.which("vgcreate") else "lvm2 is not installed (apt-get install lvm2)"
            )
        if ptype == "rbd":
            return env.ceph_missing
        if ptype == "iscsi":
            err = kernel.netlink_iscsi_error()
            return (
                "an iscsi pool cannot log in here: socket(AF_NETLINK, NETLINK_ISCSI) fails "
                f"({err}); " + KERNEL_TIER.format("test_iscsi_pool_with_chap_for_real")
                if err
                else "no iSCSI target is started by this test"
            )
        if ptype in ("iscsi-direct", "gluster"):
            return (
                f"a {ptype} pool needs its server (tested for real in test_pools_real_backends.py)"
            )
        if ptype in ("fs", "disk"):
            return (
                f"{ptype} pools on loop devices are tested in test_pools_types.py; this test "
                "does not partition or format devices"
            )
        return None
    if kind == "bridges":
        ports = [p if isinstance(p, str) else p.get("name") for p in bridge_ports(spec)]
        if spec.get("vlan_filtering") and not kernel.has_bridge_vlan_filtering():
            return (
                "bridge VLAN filtering needs CONFIG_BRIDGE_VLAN_FILTERING, which this kernel "
                "lacks; "
                + KERNEL_TIER.format("test_vlan_trunk_and_access_ports_carry_tagged_traffic")
            )
        if any("." in p for p in ports) and not kernel.has_8021q():
            return (
                "VLAN sub-interfaces need the kernel's 8021q support, which this kernel lacks; "
                + KERNEL_TIER.format("test_vlan_subinterface_port_carries_tagged_traffic")
            )
        return None
    if kind == "snapshots" and spec.get("quiesce"):
        return "quiesce needs the QEMU guest agent inside the VM; the test's tiny VMs run no OS"
    return None


def bridge_ports(spec):
    ports = spec.get("ports") or []
    if isinstance(ports, dict):
        return [dict(v or {}, name=k) for k, v in ports.items()]
    return ports


def parts(kvm):
    """``(part, spec)`` of every object of a pillar, and ``pools:NAME:volumes``."""
    out = []
    for kind in ("bridges", "networks", "pools", "snapshots"):
        for name, spec in (kvm.get(kind) or {}).items():
            out.append((f"{kind}:{name}", spec or {}))
            if kind == "pools" and (spec or {}).get("volumes"):
                out.append((f"pools:{name}:volumes", spec))
    return out


def maybe_limited(part, spec):
    """Whether :func:`limit` may find ``part`` beyond some host (its kind can be)."""
    kind = part.split(":")[0]
    if kind == "pools" and part.endswith(":volumes"):
        return spec.get("type") == "logical"
    if kind == "pools":
        return spec.get("type") != "dir"
    if kind == "bridges":
        names = [p if isinstance(p, str) else p.get("name", "") for p in bridge_ports(spec)]
        return bool(spec.get("vlan_filtering")) or any("." in n for n in names)
    return kind == "snapshots" and bool(spec.get("quiesce"))


class Env:
    """What this host offers, found once per module."""

    def __init__(self, conn):
        self.conn = conn
        self.ceph = None
        self.ceph_missing = "no example needs Ceph"
        self._ceph_tried = False

    def need_ceph(self):
        if self._ceph_tried:
            return
        self._ceph_tried = True
        from tests.support.ceph import Ceph  # pylint: disable=import-outside-toplevel
        from tests.support.storage_servers import Unavailable, backend_missing  # pylint: disable=import-outside-toplevel

        missing = backend_missing(self.conn, "rbd")
        if missing:
            self.ceph_missing = missing
            return
        server = Ceph()
        try:
            server.start()
        except Unavailable as exc:
            server.stop()
            self.ceph_missing = f"no Ceph could be started here: {exc}"
            return
        except BaseException:
            server.stop()
            raise
        self.ceph, self.ceph_missing = server, None

    def close(self):
        if self.ceph:
            self.ceph.stop()


def free_subnet(conn, prefix=27):
    """A /27 of 198.51.100.0/24 that no route here and no libvirt network uses."""
    used = []
    out = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout
    for word in re.findall(r"(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", out):
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word, strict=False))
    from lxml import etree  # pylint: disable=import-outside-toplevel

    for net in conn.listAllNetworks(0):
        for ip in etree.fromstring(net.XMLDesc(0)).iter("ip"):
            with contextlib.suppress(ValueError, TypeError):
                mask = ip.get("prefix") or ip.get("netmask") or "24"
                used.append(ipaddress.ip_network(f"{ip.get('address')}/{mask}", strict=False))
    candidates = list(ipaddress.ip_network(sandbox.ROOT_NS_RANGE).subnets(new_prefix=prefix))
    random.shuffle(candidates)
    for cand in candidates:
        if not any(cand.overlaps(u) and u.prefixlen > 0 for u in used):
            return cand
    pytest.skip(f"no free /{prefix} left in {sandbox.ROOT_NS_RANGE} for a libvirt network")
    return None


class Sandbox:
    """A pillar example rewritten onto ``kvt-`` objects on this host, and everything it made."""

    def __init__(self, env, pillar, workdir):
        self.env = env
        self.conn = env.conn
        self.original = pillar
        self.workdir = pathlib.Path(workdir)
        self.pillar = copy.deepcopy(pillar)
        self.limits = {}  # part -> reason
        self.names = {}  # (kind, original) -> kvt name
        self.lan = None
        self.vms, self.loops, self.vgs, self.made = [], [], [], []
        self.server = None
        self.etc = {}

    def name(self, kind, original, letter):
        key = (kind, original)
        if key not in self.names:
            self.names[key] = sandbox.uid(letter)
            self.made.append(self.names[key])
        return self.names[key]

    # -- rewriting ----------------------------------------------------------------------

    def build(self):
        kvm = self.pillar["kvm"]
        for part, spec in parts(self.original["kvm"]):
            reason = limit(part, spec, self.env)
            if reason:
                self.limits[part] = reason
        if "connection" in kvm:
            kvm["connection"] = {"uri": sandbox.URI}
        self._bridges(kvm)
        self._networks(kvm)
        self._pools(kvm)
        self._vms(kvm)
        self._snapshots(kvm)
        for key in [
            k
            for k in ("bridges", "networks", "pools", "vms", "snapshots")
            if k in kvm and not kvm[k]
        ]:
            del kvm[key]
        schema.validate_pillar(kvm)  # the rewritten pillar is still valid
        return self

    def _bridges(self, kvm):
        bridges = kvm.get("bridges") or {}
        new = {}
        uplink = None
        for name, spec in bridges.items():
            if f"bridges:{name}" in self.limits:
                continue
            spec = dict(spec or {})
            if not spec.get("absent") and bridge_ports(spec) and uplink is None:
                uplink = (name, spec)
            new[self.name("bridge", name, "b")] = spec
        if not new:
            kvm.pop("bridges", None)
            return
        kvm["bridges"] = new
        host_addr, gateway = "192.0.2.10/24", "192.0.2.1/24"
        nic = "eno1"
        if uplink:
            spec = uplink[1]
            first = bridge_ports(spec)[0]
            nic = (first if isinstance(first, str) else first["name"]).split(".")[0]
            v4 = [a for a in spec.get("addresses", []) if ipaddress.ip_interface(a).version == 4]
            if v4:
                host_addr = v4[0]
            if spec.get("gateway"):
                gateway = f"{spec['gateway']}/{ipaddress.ip_interface(host_addr).network.prefixlen}"
        self.lan = sandbox.Lan(
            tag=uuid.uuid4().hex[:6], host_addr=host_addr, gateway=gateway, nic=nic
        )
        self.lan.create()
        present = {nic}
        for spec in new.values():
            if spec.get("absent"):
                continue
            for port in bridge_ports(spec):
                pname = port if isinstance(port, str) else port["name"]
                base = pname.split(".")[0]
                if base not in present:
                    self.lan.add_nic(base, peer=f"kvt{uuid.uuid4().hex[:8]}")
                    present.add(base)
        if any((spec.get("persist") or "none") != "none" for spec in new.values()):
            for directory in ETC_DIRS:
                copy_dir = self.workdir / "etc" / directory.strip("/").replace("/", "-")
                if os.path.isdir(directory):
                    shutil.copytree(directory, copy_dir, symlinks=True)
                    self.etc[directory] = copy_dir

    def _networks(self, kvm):
        networks = kvm.get("networks") or {}
        new = {}
        for name, spec in networks.items():
            spec = copy.deepcopy(spec or {})
            bridge = spec.get("bridge")
            if spec.get("mode") == "bridge" and f"bridges:{bridge}" in self.limits:
                self.limits[f"networks:{name}"] = (
                    f"its bridge {bridge} is not applied here ({self.limits[f'bridges:{bridge}']})"
                )
                continue
            if spec.get("mode") == "bridge":
                spec["bridge"] = self.name("bridge", bridge, "b")
            elif bridge:
                spec["bridge"] = self.name("virbr", bridge, "v")
            for key in ("address6", "dhcp6"):
                if spec.pop(key, None) is not None:
                    self.limits.setdefault(
                        f"networks:{name}:{key}",
                        "IPv6 is left out: in the root namespace (where libvirtd makes the "
                        f"network's bridge) the tests use only {sandbox.ROOT_NS_RANGE}",
                    )
            if spec.get("address"):
                self._move_network(spec)
            new[self.name("network", name, "n")] = spec
        if new:
            kvm["networks"] = new

    def _move_network(self, spec):
        old = ipaddress.ip_interface(spec["address"])
        subnet = free_subnet(self.conn)
        last = subnet.num_addresses - 2

        def move(addr):
            offset = int(ipaddress.ip_address(addr)) - int(old.network.network_address)
            return str(subnet.network_address + max(1, min(offset, last)))

        spec["address"] = f"{move(old.ip)}/{subnet.prefixlen}"
        dhcp = spec.get("dhcp")
        if dhcp:
            for key in ("start", "end"):
                if key in dhcp:
                    dhcp[key] = move(dhcp[key])
            if dhcp.get("start") == spec["address"].split("/")[0]:
                dhcp["start"] = str(ipaddress.ip_address(dhcp["start"]) + 1)
            for host in dhcp.get("hosts", []):
                host["ip"] = move(host["ip"])

    def _pools(self, kvm):
        pools = kvm.get("pools") or {}
        new = {}
        for name, spec in pools.items():
            if f"pools:{name}" in self.limits:
                continue
            new_name = self.name("pool", name, "p")
            spec = self.pool_spec(new_name, spec, real=True)
            if f"pools:{name}:volumes" in self.limits:
                spec.pop("volumes", None)
            new[new_name] = spec
        if new:
            kvm["pools"] = new
        else:
            kvm.pop("pools", None)

    def pool_spec(self, new_name, spec, real):
        spec = copy.deepcopy(spec)
        if spec.get("absent"):
            return spec
        ptype = spec.get("type")
        source = spec.get("source") or {}
        if ptype in ("dir", "fs", "netfs"):
            spec["target"] = sandbox.files_dir(new_name) + ("/mnt" if ptype != "dir" else "")
        elif "target" in spec:
            spec["target"] = sandbox.files_dir(new_name)
        if "hosts" in source:
            source["hosts"] = ["127.0.0.1:6789" if ptype == "rbd" else "127.0.0.1"]
        if ptype == "logical":
            source["name"] = sandbox.uid("vg-")
            if real:
                source["devices"] = [self._loop(64 * M)]
                self.vgs.append(source["name"])
            else:
                source["devices"] = [os.path.join(sandbox.files_dir(new_name), "no-device")]
        elif ptype in ("fs", "disk"):
            source["devices"] = [os.path.join(sandbox.files_dir(new_name), "no-device")]
        if ptype == "rbd" and real and self.env.ceph:
            ceph = self.env.ceph
            source["name"] = ceph.pool
            if "auth" in source:
                source["auth"] = {"type": "ceph", "username": ceph.user, "secret": ceph.key}
        if source:
            spec["source"] = source
        if real:
            self._volumes(spec)
        return spec

    def _loop(self, size):
        directory = sandbox.files_dir(sandbox.uid("loop-"))
        self.made.append(os.path.basename(directory))
        backing = os.path.join(directory, "backing.img")
        with open(backing, "wb") as fh:
            fh.truncate(size)
        dev = subprocess.run(
            ["losetup", "-f", "--show", backing], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.loops.append(dev)
        return dev

    def _volumes(self, spec):
        sparse = spec.get("type") in ("dir", "fs", "netfs")
        for vname, vol in (spec.get("volumes") or {}).items():
            if vol.get("absent"):
                continue
            if "size" in vol:
                size = units.parse_size(vol["size"])
                prealloc = vol.get("preallocation") not in (None, False, "off", "metadata")
                cap = 1024 * M if sparse and not prealloc else 16 * M
                vol["size"] = min(size, cap)
            if vol.get("source"):
                vol["source"], vol["sha256"] = self._source(vname, vol["source"], vol.get("format"))
            backing = vol.get("backing")
            if backing and backing.startswith("/"):
                path = os.path.join(self._files(), os.path.basename(backing))
                sandbox.qemu_img("create", "-q", "-f", "qcow2", path, "16M")
                vol["backing"] = path

    def _files(self):
        if not hasattr(self, "_files_dir"):
            self._files_dir = sandbox.files_dir(sandbox.uid("src-"))
            self.made.append(os.path.basename(self._files_dir))
        return self._files_dir

    def _source(self, vname, source, fmt=None):
        """A small local image standing for ``source``: its path (or URL) and sha256
        (a real qcow2 image where the volume says qcow2: volumes may be built on it)."""
        path = os.path.join(self._files(), os.path.basename(source.rstrip("/")) or vname)
        if fmt == "qcow2":
            sandbox.qemu_img("create", "-q", "-f", "qcow2", path, "16M")
        else:
            with open(path, "wb") as fh:
                fh.write(os.urandom(64 * 1024))
                fh.truncate(M)
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        if source.startswith(("http://", "https://")) and self.lan is None:
            # (with bridges, salt-call runs in the sandbox's netns, where this test's
            # loopback server cannot be reached: the file itself stands in for the URL)
            if self.server is None:
                self.server = http_servers.FileServer(self._files())
            return f"{self.server.url}/{os.path.basename(path)}", digest
        return path, digest

    def _vms(self, kvm):
        """Declared VMs on the sandbox's pools and networks, small (no OS boots from the
        stand-in images). A NIC on a host bridge is left out: libvirtd makes the VM's tap in
        the root namespace, while the sandbox's bridges live in a netns (VMs on declared
        bridges are tested in test_guest_vms.py)."""
        vms = kvm.get("vms") or {}
        new = {}
        for name, spec in vms.items():
            spec = copy.deepcopy(spec or {})
            new_name = self.name("vm", name, "vm")
            self.vms.append(new_name)
            new[new_name] = spec
            if spec.get("absent"):
                continue
            for key in ("memory", "max_memory"):
                if key in spec:
                    spec[key] = min(units.parse_size(spec[key]), 128 * M)
            if spec.pop("cpu", None):
                # nested KVM (the CI machines) refuses host-model's MSRs: "failed to set MSR 0x10a"
                self.limits[f"vms:{name}:cpu"] = (
                    "the CPU model is left to libvirt: nested KVM here refuses host-model's MSRs "
                    "(test_vms.py::test_cpu_mode_is_defined_and_converges defines each mode on a "
                    "shut-off VM)"
                )
            for disk in spec.get("disks") or []:
                disk["pool"] = self.names.get(("pool", disk["pool"]), disk["pool"])
                if "size" in disk:
                    disk["size"] = min(units.parse_size(disk["size"]), 16 * M)
            nics = []
            for nic in spec.get("nics") or []:
                if nic.get("bridge"):
                    self.limits[f"vms:{name}:nics:{nic['bridge']}"] = (
                        "a VM's tap is made in the root namespace; the sandbox's bridges are in "
                        "a netns (tested in test_guest_vms.py)"
                    )
                    continue
                nic["network"] = self.names.get(("network", nic["network"]), nic["network"])
                nics.append(nic)
            if "nics" in spec:
                spec["nics"] = nics
        if new:
            kvm["vms"] = new

    def _snapshots(self, kvm):
        snaps = kvm.get("snapshots") or {}
        declared = self.original["kvm"].get("vms") or {}
        new = {}
        for vm, spec in snaps.items():
            if f"snapshots:{vm}" in self.limits:
                continue
            name = self.name("vm", vm, "vm")
            if vm not in declared:  # a VM the pillar does not declare: a tiny one stands for it
                sandbox.make_vm(self.conn, name=name, start=True)
                self.vms.append(name)
            new[name] = spec
        if new:
            kvm["snapshots"] = new
        else:
            kvm.pop("snapshots", None)

    # -- running ------------------------------------------------------------------------

    def salt_call(self, call, *args):
        """The real salt-call, in the sandbox's netns, with private /etc copies."""
        cmd = call.command(*args, out="json")
        if self.lan:
            cmd = ["ip", "netns", "exec", self.lan.host, *cmd]
        if self.etc:
            binds = " && ".join(
                f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}"
                for dst, src in self.etc.items()
            )
            cmd = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'{binds} && exec "$@"',
                "sh",
                *cmd,
            ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=600,
            env=call.env,
            cwd=str(call.root),
            check=False,
        )
        try:
            data = json.loads(proc.stdout)["local"]
        except (ValueError, KeyError):
            data = proc.stdout
        return proc.returncode, data, proc.stderr

    def remove(self):
        for name in self.vms:
            sandbox.remove_vm(self.conn, name)
        sandbox.remove_named(
            self.made
        )  # pools (a logical pool's VG deactivated), networks, secrets
        for vg in self.vgs:
            subprocess.run(["vgremove", "-f", vg], check=False, capture_output=True)
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
        sandbox.remove_named(self.made)
        if self.lan:
            self.lan.remove()
        if self.server:
            self.server.stop()


def needs_ceph(pillar):
    return any(
        (spec or {}).get("type") == "rbd" for spec in (pillar["kvm"].get("pools") or {}).values()
    )


def secret_texts(pillar):
    out = []
    for spec in (pillar["kvm"].get("pools") or {}).values():
        auth = ((spec or {}).get("source") or {}).get("auth") or {}
        if auth.get("secret"):
            out.append(auth["secret"])
    return out
