"""``make demo``: apply a pillar.example-style pillar to a sandbox on this host.

The sandbox: a ``kvt-`` veth standing for the host's NIC, holding an address of
a free documentation subnet (198.51.100.0/24), whose far end sits in a "LAN"
network namespace with the gateway; a directory pool under /var/tmp/kvt-files;
and a real Linux guest (Debian's kernel and the test suite's busybox initramfs,
tests/support/guest.py) declared under ``kvm:vms``, which pings the LAN's
gateway through the declared bridge. The bridge is in this machine's own
network namespace because libvirtd puts a VM's tap there; only ``kvt-`` links
are touched, and no default route is declared (the machine's stays).

The demo runs the real ``salt-call --local state.apply kvm``, prints Salt's
output, shows the guest's console (its ping replies from the LAN), applies
again to show that nothing changes, draws the sandbox with ``kvm.topology``
into ``demo/topology.svg``, then removes everything; every name starts with
``kvt-``. Parts whose states do not exist yet are left out of the pillar.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
#: the picture of the sandbox that the demo draws with kvm.topology (docs/_static/topology-demo.svg
#: is one)
TOPOLOGY_SVG = os.path.join(ROOT, "demo", "topology.svg")

from tests.support import guest as guestlib  # noqa: E402
from tests.support import sandbox  # noqa: E402
from tests.support.saltcall import SaltCall, changed, repo_file_root, state_results  # noqa: E402


def banner(text):
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def available_states(call):
    _, data, _ = call.run("sys.list_state_functions", "kvm")
    return set(data or [])


#: the NAT network's range; the LAN's subnet is picked from what is left free
NAT = "198.51.100.128/26"
BRIDGE = "kvt-br0"


def demo_pillar(states, lan, pool_dir, vm_name, vm):
    pillar = {}
    if "kvm.bridge_present" in states:
        pillar["bridges"] = {
            BRIDGE: {
                "ports": [lan.uplink],
                "stp": False,
                "forward_delay": 0,
                "addresses": [lan.host],
                "persist": "none",
                "probe": {"ping": lan.gateway, "timeout": "10s"},
            }
        }
    if "kvm.network_present" in states:
        pillar["networks"] = {
            "kvt-demo-nat": {
                "mode": "nat",
                "bridge": "kvt-virbr9",
                "address": "198.51.100.129/26",
                "dhcp": {"start": "198.51.100.140", "end": "198.51.100.180"},
                "autostart": False,
            }
        }
    if "kvm.pool_present" in states:
        pool = {"type": "dir", "target": pool_dir, "autostart": False}
        if "kvm.volume_present" in states:
            pool["volumes"] = {
                "base.qcow2": {"size": "1G", "format": "qcow2"},
                "web01.qcow2": {"size": "2G", "format": "qcow2", "backing": "base.qcow2"},
            }
        pillar["pools"] = {"kvt-demo": pool}
    if "kvm.vm_present" in states and vm:
        pillar["vms"] = {vm_name: vm}
    if "kvm.snapshots_retained" in states and vm:
        pillar["snapshots"] = {vm_name: {"every": "1d", "keep": 3, "prefix": "auto-"}}
    return pillar


def demo_vm(conn, lan):
    """The declared guest: direct kernel boot of the guest image, on the bridge and the NAT
    network, pinging the LAN's gateway (its console says so); None when no image can be built."""
    why = guestlib.missing()
    if why:
        print(f"(no real guest in this demo: {why})")
        return None
    img = guestlib.image()
    cmdline = [
        "console=ttyS0",
        "quiet",
        "panic=-1",
        "no_timer_check",
        f"kvt.ip={lan.guest}",
        f"kvt.work=ping:{lan.gateway}",
    ]
    return {
        "type": guestlib.domain_type(conn, img),
        "memory": f"{guestlib.MEMORY_MIB}M",
        "vcpus": 1,
        "boot": {"kernel": img.kernel, "initrd": img.initrd, "cmdline": " ".join(cmdline)},
        "disks": [{"pool": "kvt-demo", "volume": "web01.qcow2"}],
        "nics": [{"bridge": BRIDGE}, {"network": "kvt-demo-nat"}],
        "console": {"log": True},
        "state": "running",
    }


class DemoLan(guestlib.RootLan):
    """The host's NIC: a ``kvt-`` veth in the root namespace holding the host's address
    (which the bridge takes over), its far end in a LAN namespace with the gateway."""

    def __init__(self, net):
        super().__init__(net)
        self.bridge = BRIDGE

    def create(self):
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

        super().create()
        addr, plen = self.host.split("/")
        with IPRoute() as ipr:
            ipr.addr(
                "add",
                index=ipr.link_lookup(ifname=self.uplink)[0],
                address=addr,
                prefixlen=int(plen),
            )
        return self

    def addresses(self):
        out = subprocess.run(
            ["ip", "-br", "addr", "show"], capture_output=True, text=True, check=False
        ).stdout
        return "".join(
            line + "\n"
            for line in out.splitlines()
            if line.split("@")[0].split()[0] in (self.uplink, self.bridge)
        )


def console(call, vm_name, lan, timeout=180):
    """Wait for the guest's ping replies from the LAN's gateway, then show its console."""
    banner(f"salt-call --local kvm.vm_console {vm_name} lines=6 --out=newline_values_only")
    end = time.monotonic() + timeout
    out = ""
    while time.monotonic() < end:
        _, out, _ = call.run("kvm.vm_console", vm_name, "lines=6", out="newline_values_only")
        if f"bytes from {lan.gateway}" in out:
            break
        time.sleep(2)
    print(out, end="" if out.endswith("\n") else "\n")
    if f"bytes from {lan.gateway}" not in out:
        print(f"the guest got no reply from the LAN's gateway {lan.gateway} within {timeout}s")
        return 1
    return 0


def adhoc(call, lan, states, vm_name):
    """A few ad hoc calls on the converged sandbox, as an operator would make them."""
    calls = [("yaml", "kvm.host_info")]
    if "kvm.bridge_present" in states:
        calls.append(("kvm", "kvm.bridge_list"))
    if "kvm.network_present" in states:
        calls.append(("yaml", "kvm.network_list"))
    if "kvm.pool_present" in states:
        calls.append(("kvm", "kvm.pool_list"))
    if "kvm.volume_present" in states:
        calls.append(("kvm", "kvm.volume_list", "kvt-demo"))
    if "kvm.vm_present" in states:
        calls.append(("kvm", "kvm.vm_list"))
    if "kvm.snapshots_retained" in states:
        calls.append(("kvm", "kvm.snapshot_tree", vm_name))
    for out_format, *args in calls:
        shown = f" --out={out_format}" if out_format == "kvm" else ""
        banner("salt-call --local " + " ".join(args) + shown)
        _, out, _ = call.run(*args, out=out_format)
        print(out, end="" if out.endswith("\n") else "\n")
    banner("salt-call --local kvm.validate_pillar (a typo and a bad size)")
    bad = {
        "pools": {
            "kvt-demo": {
                "type": "dir",
                "target": "/var/tmp/kvt-files/kvt-demo-pool",
                "volumes": {"ubuntu.qcow2": {"size": "20X"}},
            }
        },
        "bridges": {"kvt-br0": {"stpp": True}},
    }
    code, out, err = call.run("kvm.validate_pillar", f"pillar={json.dumps(bad)}", out="yaml")
    # salt-call prints the function's docstring after the error; show the error line
    print(
        "".join(
            line.strip() + "\n"
            for line in (out + err).splitlines()
            if line.startswith(("Error running", "kvm:"))
        ),
        end="",
    )
    print(f"(exit code {code})")


def picture(call, vm_name):
    """Take a named snapshot of the guest (what an operator does before an upgrade), then
    draw the sandbox with kvm.topology."""
    banner(f"salt-call --local kvm.snapshot_create {vm_name} before-upgrade")
    _, snap, _ = call.run("kvm.snapshot_create", vm_name, "before-upgrade")
    if isinstance(snap, dict):
        print(
            "".join(
                f"  {key}: {snap.get(key)}\n"
                for key in ("name", "kind", "memory", "parent", "current")
            ),
            end="",
        )
    else:
        print(snap)
    args = ("kvm.topology", "format=svg", f"path={TOPOLOGY_SVG}", f"names=kvt-demo*,{BRIDGE}")
    banner("salt-call --local " + " ".join(args))
    code, out, _ = call.run(*args, out="yaml")
    print(out, end="")
    if code == 0:
        print(f"the picture of the sandbox: {TOPOLOGY_SVG}")
    return code


def main():
    import yaml  # pylint: disable=import-outside-toplevel

    for name in ("kvt-demo", "kvt-virbr9", BRIDGE):
        sandbox.register(name)
    workdir = tempfile.mkdtemp(prefix="kvt-demo-")
    conn = sandbox.connect()
    net = guestlib.free_subnet(conn, taken=[guestlib.ipaddress.ip_network(NAT)])
    if net is None:
        print("no documentation subnet of 198.51.100.0/24 is free on this host")
        return 1
    lan = DemoLan(net).create()
    pool_dir = sandbox.files_dir("kvt-demo-pool")
    vm_name = sandbox.register("kvt-demo-web")
    try:
        call = SaltCall(workdir, file_roots=[repo_file_root(os.path.join(workdir, "file-root"))])
        states = available_states(call)
        vm = demo_vm(conn, lan)
        pillar = demo_pillar(states, lan, pool_dir, vm_name, vm)
        call.set_pillar(pillar)

        banner("the demo pillar (kvm)")
        print(yaml.safe_dump({"kvm": pillar}, default_flow_style=False, sort_keys=False), end="")
        banner(
            f"the host's NIC before (its far end is in the LAN namespace {lan.ns}, gateway "
            f"{lan.gateway})"
        )
        print(lan.addresses(), end="")

        banner("salt-call --local state.apply kvm")
        code, out, _ = call.run("state.apply", "kvm", out="highstate")
        print(out, end="")
        if code != 0:
            print(f"first apply failed (exit {code})")
            return code

        banner("the host's NIC and the bridge after")
        print(lan.addresses(), end="")
        if vm and console(call, vm_name, lan):
            return 1

        banner("salt-call --local state.apply kvm (again: nothing to change)")
        code, data, _ = call.run("state.apply", "kvm")
        results = state_results(data)
        again = changed(data)
        for sid, ret in results.items():
            print(
                f"  {sid}: result={ret['result']} changes={len(ret['changes'])} -- {ret['comment']}"
            )
        print(f"\n{len(results)} states, {len(again)} with changes on the second apply")
        if code != 0 or again:
            return 1
        adhoc(call, lan, states, vm_name)
        return picture(call, vm_name) if vm else 0
    finally:
        banner("clean-up")
        sandbox.remove_vm(conn, vm_name)
        with contextlib.suppress(OSError):
            os.remove(f"/var/log/libvirt/qemu/{vm_name}.console.log")
        lan.remove()
        for line in sandbox.sweep(only_mine=True):
            print("removed", line)
        subprocess.run(["rm", "-rf", workdir], check=False)


if __name__ == "__main__":
    sys.exit(main())
