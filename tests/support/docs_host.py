"""A hypervisor of its own, on this machine, where the docs' commands run as written.

The docs speak of ``hv01``, a NIC ``eno1``, a pool ``default`` in
``/var/lib/libvirt/images``, ``/srv/kvm/images``, a network ``lab``. On a
machine that other test runs share, none of those names may be touched, so
the commands run inside namespaces of their own:

* a network namespace (``kvt-h-<tag>``, from :class:`tests.support.sandbox.Lan`)
  with NICs ``eno1`` (192.0.2.10/24, default route via 192.0.2.1 in a "LAN"
  namespace), ``eno2`` and ``eno3``;
* a mount namespace in which ``/run/libvirt``, ``/etc/libvirt``,
  ``/var/lib/libvirt``, ``/var/cache/libvirt``, ``/var/log/libvirt``, ``/srv``,
  ``/etc/salt``, ``/var/cache/salt``, ``/var/log/salt`` and ``/run/salt`` are
  private directories under ``/var/tmp/kvt-files/kvt-dh-<tag>``;
* there, a libvirtd and virtlogd of their own (``qemu:///system`` inside is
  that libvirtd: VMs, networks with their dnsmasq and pools are real, and
  private), and a salt-master with one minion ``hv01`` (this checkout's venv),
  so ``salt '*' ...``, ``salt-run ...`` and ``salt-call ...`` run unchanged.

Every process is started here and stopped here by its pid file.
"""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import yaml

from tests.support import sandbox

VENV_BIN = pathlib.Path(sys.executable).parent
REPO = pathlib.Path(__file__).resolve().parents[2]
#: private directory (under the host's dir) -> where it is mounted inside
BINDS = {
    "run-libvirt": "/run/libvirt",
    "etc-libvirt": "/etc/libvirt",
    "lib-libvirt": "/var/lib/libvirt",
    "cache-libvirt": "/var/cache/libvirt",
    "log-libvirt": "/var/log/libvirt",
    "srv": "/srv",
    "etc-salt": "/etc/salt",
    "cache-salt": "/var/cache/salt",
    "log-salt": "/var/log/salt",
    "run-salt": "/run/salt",
    # where bridge persistence (persist: auto) writes: private copies, never the machine's own
    "etc-network": "/etc/network",
    "etc-systemd-network": "/etc/systemd/network",
    "etc-networkmanager": "/etc/NetworkManager",
}
#: private directories that start as copies of the machine's
COPIED = {
    "etc-network": "/etc/network",
    "etc-systemd-network": "/etc/systemd/network",
    "etc-networkmanager": "/etc/NetworkManager",
}
#: private files: name resolution answers at once (no DNS server is reachable from the namespace,
#: and Salt's grains look the host name up, 10 s per lookup that times out)
FILE_BINDS = {"hosts": "/etc/hosts", "resolv.conf": "/etc/resolv.conf"}
MINION_ID = "hv01"


class DocsHost:
    def __init__(self):
        self.tag = sandbox.uid("dh-", 4)[len(sandbox.PREFIX) + 3 :]
        self.lan = sandbox.Lan(tag=f"d{self.tag}")
        self.root = pathlib.Path(
            sandbox.files_dir(sandbox.register(f"{sandbox.PREFIX}dh-{self.tag}"))
        )
        self.holder = None
        self.lan_holder = None
        self.log = []  # (command, returncode, output) of everything run

    # -- set-up ---------------------------------------------------------------------------

    def start(self, formula_root):
        self.lan.create()
        # a process in the LAN namespace too: while one runs, the namespace (and so the
        # veth NICs) outlives a sweep by another run that deletes every kvt- netns name
        self.lan_holder = subprocess.Popen(
            ["ip", "netns", "exec", self.lan.lan, "sleep", "infinity"]
        )  # pylint: disable=consider-using-with
        self.lan.add_nic("eno2")
        self.lan.add_nic("eno3")
        for name in BINDS:
            if name in COPIED and os.path.isdir(COPIED[name]):
                shutil.copytree(COPIED[name], self.root / name, symlinks=True, dirs_exist_ok=True)
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._libvirt_config()
        (self.root / "lib-libvirt" / "images").mkdir(exist_ok=True)
        for sub in ("salt", "pillar"):
            (self.root / "srv" / sub).mkdir(exist_ok=True)
        self._salt_config(formula_root)
        ready = self.root / "ready"
        # (an empty mount point is made where missing, e.g. /etc/salt on a host without Salt's
        # packages)
        binds = " && ".join(
            f"mkdir -p {target} && mount --bind {self.root / name} {target}"
            for name, target in BINDS.items()
        )
        hostname = socket.gethostname()
        (self.root / "hosts").write_text(
            f"127.0.0.1 localhost {hostname}\n::1 localhost ip6-localhost {hostname}\n"
        )
        (self.root / "resolv.conf").write_text(
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        binds += "".join(
            f" && mount --bind {self.root / name} {target}" for name, target in FILE_BINDS.items()
        )
        script = f"{binds} && touch {ready} && exec sleep infinity"
        # `ip netns exec` and `unshare` exec: the pid stays the holder's (`sleep`)
        self.holder = subprocess.Popen(  # pylint: disable=consider-using-with
            [
                "ip",
                "netns",
                "exec",
                self.lan.host,
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not sandbox.wait_for(ready.exists, timeout=20):
            raise RuntimeError(
                "the docs host's namespaces did not come up: "
                f"{self.holder.stderr.read().decode()[-500:]}"
            )
        self.must("virtlogd -d -p /run/libvirt/virtlogd.pid")
        self.must("libvirtd -d -p /run/libvirt/libvirtd.pid")
        if not sandbox.wait_for(
            lambda: self.sh("virsh -c qemu:///system version").returncode == 0, timeout=30
        ):
            raise RuntimeError("the docs host's libvirtd does not answer")
        self.must(f"{VENV_BIN}/salt-master -d")
        self.must(f"{VENV_BIN}/salt-minion -d")
        ok = sandbox.wait_for(
            lambda: MINION_ID in self.sh(f"{VENV_BIN}/salt --timeout=3 '*' test.ping").stdout,
            timeout=90,
            interval=1,
        )
        if not ok:
            raise RuntimeError(
                "minion hv01 of the docs host does not answer: "
                + self.sh("tail -20 /var/log/salt/minion").stdout
            )
        return self

    def _libvirt_config(self):
        """/etc/libvirt's settings, without the machine's pool, VM and network definitions
        (Debian's ``default`` NAT network is kept, as on a fresh install, not started)."""
        etc = self.root / "etc-libvirt"
        for entry in os.scandir("/etc/libvirt"):
            if entry.is_file():
                shutil.copy2(entry.path, etc / entry.name)
        (etc / "qemu" / "networks").mkdir(parents=True, exist_ok=True)
        (etc / "storage").mkdir(exist_ok=True)
        default = pathlib.Path("/usr/share/libvirt/networks/default.xml")
        if default.exists():
            shutil.copy2(default, etc / "qemu" / "networks" / "default.xml")

    def _salt_config(self, formula_root):
        etc = self.root / "etc-salt"
        master = {
            "interface": "127.0.0.1",
            "auto_accept": True,
            "file_roots": {"base": ["/srv/salt", str(formula_root)]},
            "pillar_roots": {"base": ["/srv/pillar"]},
            "log_level_logfile": "info",
            "pidfile": "/run/salt/salt-master.pid",
        }
        minion = {
            "id": MINION_ID,
            "master": "127.0.0.1",
            "log_level_logfile": "info",
            "pidfile": "/run/salt/salt-minion.pid",
            "acceptance_wait_time": 1,
            "random_reauth_delay": 0,
        }
        (etc / "master").write_text(yaml.safe_dump(master))
        (etc / "minion").write_text(yaml.safe_dump(minion))
        (self.root / "srv" / "pillar" / "top.sls").write_text("base: {}\n")

    # -- running ------------------------------------------------------------------------

    def sh(self, command, timeout=300):
        """``bash -c COMMAND`` on the docs host (its namespaces, this venv first on PATH)."""
        env = dict(os.environ, PATH=f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", HOME="/root")
        env.pop("PYTHONPATH", None)
        # in the checkout, as a reader of README.md is in their clone (`make dist`, `cp dist/...`)
        cmd = [
            "nsenter",
            "-t",
            str(self.holder.pid),
            "-m",
            "-n",
            f"--wd={REPO}",
            "--",
            "bash",
            "-c",
            command,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        self.log.append((command, proc.returncode, proc.stdout + proc.stderr))
        return proc

    def must(self, command, timeout=300):
        proc = self.sh(command, timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"docs host: `{command}` -> "
                f"{proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        return proc

    def write(self, path, text):
        """A file on the docs host (``path`` must be under one of its private directories)."""
        for name, target in BINDS.items():
            if path == target or path.startswith(target + "/"):
                dest = self.root / name / os.path.relpath(path, target)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text)
                return dest
        raise ValueError(f"{path} is not private to the docs host")

    def set_pillar(self, sls_text, name="kvm"):
        """``/srv/pillar/<name>.sls`` assigned to hv01, and the minion's pillar refreshed."""
        self.write(f"/srv/pillar/{name}.sls", sls_text)
        self.write("/srv/pillar/top.sls", yaml.safe_dump({"base": {MINION_ID: [name]}}))
        self.must(f"{VENV_BIN}/salt-call saltutil.refresh_pillar")

    def make_vm(self, name):
        """A tiny running VM ``name`` (64 MiB, no OS) with its disk in /var/lib/libvirt/images."""
        disk = f"/var/lib/libvirt/images/{name}.qcow2"
        self.write(f"/srv/{name}.xml", sandbox.tiny_vm_xml(name, disk))
        self.must(
            f"qemu-img create -q -f qcow2 {disk} 64M && virsh -q -c qemu:///system define "
            f"/srv/{name}.xml >/dev/null "
            f"&& virsh -q -c qemu:///system start {name} >/dev/null && rm /srv/{name}.xml"
        )

    def reset(self):
        """Back to a fresh host before a page: no VMs, pools, volumes, networks (but
        Debian's ``default``, stopped), bridges, pillar, or files under /srv/kvm."""
        virsh = "virsh -q -c qemu:///system"
        self.must(
            f"for d in $({virsh} list --all --name); do {virsh} destroy $d >/dev/null 2>&1; "
            f"{virsh} undefine $d --snapshots-metadata --remove-all-storage >/dev/null; done; "
            f"for n in $({virsh} net-list --all --name); do {virsh} net-destroy $n >/dev/null "
            "2>&1; "
            f"[ $n = default ] || {virsh} net-undefine $n >/dev/null; done; "
            f"for p in $({virsh} pool-list --all --name); do {virsh} pool-destroy $p >/dev/null "
            "2>&1; "
            f"{virsh} pool-undefine $p >/dev/null; done; "
            "for b in $(ip -o link show type bridge | awk -F': ' '{print $2}'); do ip link del "
            "$b; done; "
            "ip addr flush dev eno1 && ip addr add 192.0.2.10/24 dev eno1 && ip route replace "
            "default via 192.0.2.1; "
            "rm -rf /srv/kvm /var/lib/libvirt/images/*; mkdir -p /var/lib/libvirt/images; true"
        )
        self.write("/srv/pillar/top.sls", "base: {}\n")

    # -- tear-down ------------------------------------------------------------------------

    def _pid(self, path):
        with contextlib.suppress(OSError, ValueError):
            return int((self.root / path).read_text().split()[0])
        return None

    def stop(self):
        if self.holder is not None and self.holder.poll() is None:
            # VMs and networks first, so libvirtd ends its qemu and dnsmasq itself
            self.sh(
                "for d in $(virsh -q -c qemu:///system list --name); do virsh -c qemu:///system "
                "destroy $d; done; "
                "for n in $(virsh -q -c qemu:///system net-list --name); do virsh -c "
                "qemu:///system net-destroy $n; done; "
                "for p in $(virsh -q -c qemu:///system pool-list --name); do virsh -c "
                "qemu:///system pool-destroy $p; done",
                timeout=120,
            )
            for pidfile in (
                "run-salt/salt-minion.pid",
                "run-salt/salt-master.pid",
                "run-libvirt/libvirtd.pid",
                "run-libvirt/virtlogd.pid",
            ):
                pid = self._pid(pidfile)
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                        time.sleep(0.2)
            self.holder.terminate()
            self.holder.wait(timeout=10)
        if self.lan_holder is not None:
            self.lan_holder.terminate()
            self.lan_holder.wait(timeout=10)
        self.lan.remove()
        shutil.rmtree(self.root, ignore_errors=True)
