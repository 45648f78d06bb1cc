"""``make demo``: apply a pillar.example-style pillar to a sandbox on this host.

The sandbox: a network namespace standing for the host's network (NIC ``eno1``
with 192.0.2.10/24 and a default route to a gateway in a "LAN" namespace), a
directory pool under /var/tmp/kvt-files, a tiny VM for snapshots; every name
starts with ``kvt-``. The demo runs the real ``salt-call --local state.apply kvm``
inside that namespace, prints Salt's output, applies again to show that nothing
changes, draws the sandbox with ``kvm.topology`` into ``demo/topology.svg``,
then removes everything. Parts whose states do not exist yet are
left out of the pillar (the demo grows as capabilities land).
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
#: the picture of the sandbox that the demo draws with kvm.topology (docs/_static/topology-demo.svg is one)
TOPOLOGY_SVG = os.path.join(ROOT, "demo", "topology.svg")

from tests.support import sandbox  # noqa: E402
from tests.support.saltcall import SaltCall, changed, repo_file_root, state_results  # noqa: E402


def banner(text):
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def available_states(call):
    _, data, _ = call.run("sys.list_state_functions", "kvm")
    return set(data or [])


def demo_pillar(states, lan, pool_dir, vm_name):
    pillar = {}
    if "kvm.bridge_present" in states:
        pillar["bridges"] = {
            "kvt-br0": {
                "ports": [lan.nic],
                "stp": False,
                "forward_delay": 0,
                "addresses": ["192.0.2.10/24"],
                "gateway": "192.0.2.1",
                "persist": "none",
                "probe": {"ping": "192.0.2.1", "timeout": "10s"},
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
    if "kvm.snapshots_retained" in states:
        pillar["snapshots"] = {vm_name: {"every": "1d", "keep": 3, "prefix": "auto-"}}
    return pillar


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
    if "kvm.snapshots_retained" in states:
        calls.append(("kvm", "kvm.snapshot_tree", vm_name))
    for out_format, *args in calls:
        shown = f" --out={out_format}" if out_format == "kvm" else ""
        banner("salt-call --local " + " ".join(args) + shown)
        _, out, _ = call.run(*args, netns=lan.host, out=out_format)
        print(out, end="" if out.endswith("\n") else "\n")
    banner("salt-call --local kvm.validate_pillar (a typo and a bad size)")
    bad = {"pools": {"kvt-demo": {"type": "dir", "target": "/var/tmp/kvt-files/kvt-demo-pool", "volumes": {"ubuntu.qcow2": {"size": "20X"}}}}, "bridges": {"kvt-br0": {"stpp": True}}}
    code, out, err = call.run("kvm.validate_pillar", f"pillar={json.dumps(bad)}", out="yaml")
    # salt-call prints the function's docstring after the error; show the error line
    print("".join(line.strip() + "\n" for line in (out + err).splitlines() if "kvm:" in line and "invalid" in line), end="")
    print(f"(exit code {code})")


def picture(call, conn, lan, states, vm_name, pool_dir):
    """Plug the VM into the NAT network and give it the pool's web01.qcow2 (what an
    operator does next; the tiny VM has no hot-plug, so it restarts), take a named
    snapshot, then draw the sandbox with kvm.topology."""
    import libvirt  # pylint: disable=import-outside-toplevel

    dom = conn.lookupByName(vm_name)
    dom.destroy()
    if "kvm.network_present" in states:
        nic = "<interface type='network'><source network='kvt-demo-nat'/><model type='virtio'/></interface>"
        dom.attachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    if "kvm.volume_present" in states:
        disk = os.path.join(pool_dir, "web01.qcow2")
        disk = f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vdb' bus='virtio'/></disk>"
        dom.attachDeviceFlags(disk, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    dom.create()
    banner(f"salt-call --local kvm.snapshot_create {vm_name} before-upgrade")
    _, snap, _ = call.run("kvm.snapshot_create", vm_name, "before-upgrade")
    if isinstance(snap, dict):
        print("".join(f"  {key}: {snap.get(key)}\n" for key in ("name", "kind", "memory", "parent", "current")), end="")
    else:
        print(snap)
    args = ("kvm.topology", "format=svg", f"path={TOPOLOGY_SVG}", f"netns={lan.host}", "names=kvt-demo*,kvt-br0")
    banner("salt-call --local " + " ".join(args))
    code, out, _ = call.run(*args, out="yaml")
    print(out, end="")
    if code == 0:
        print(f"the picture of the sandbox: {TOPOLOGY_SVG}")
    return code


def main():
    import yaml  # pylint: disable=import-outside-toplevel

    sandbox.register("kvt-demo")
    sandbox.register("kvt-virbr9")
    workdir = tempfile.mkdtemp(prefix="kvt-demo-")
    conn = sandbox.connect()
    lan = sandbox.Lan(tag="demo").create()
    pool_dir = sandbox.files_dir("kvt-demo-pool")
    vm_name = "kvt-demo-vm"
    try:
        sandbox.make_vm(conn, name=vm_name, start=True)
        call = SaltCall(workdir, file_roots=[repo_file_root(os.path.join(workdir, "file-root"))])
        states = available_states(call)
        pillar = demo_pillar(states, lan, pool_dir, vm_name)
        call.set_pillar(pillar)

        banner("the demo pillar (kvm)")
        print(yaml.safe_dump({"kvm": pillar}, default_flow_style=False, sort_keys=False), end="")
        banner(f"host network before (netns {lan.host})")
        print(lan.run("ip", "-br", "addr").stdout, end="")

        banner("salt-call --local state.apply kvm")
        code, out, _ = call.run("state.apply", "kvm", netns=lan.host, out="highstate")
        print(out, end="")
        if code != 0:
            print(f"first apply failed (exit {code})")
            return code

        banner(f"host network after (netns {lan.host})")
        print(lan.run("ip", "-br", "addr").stdout, end="")
        print(lan.run("ip", "route").stdout, end="")

        banner("salt-call --local state.apply kvm (again: nothing to change)")
        code, data, _ = call.run("state.apply", "kvm", netns=lan.host)
        results = state_results(data)
        again = changed(data)
        for sid, ret in results.items():
            print(f"  {sid}: result={ret['result']} changes={len(ret['changes'])} -- {ret['comment']}")
        print(f"\n{len(results)} states, {len(again)} with changes on the second apply")
        if code != 0 or again:
            return 1
        adhoc(call, lan, states, vm_name)
        return picture(call, conn, lan, states, vm_name, pool_dir)
    finally:
        banner("clean-up")
        sandbox.remove_vm(conn, vm_name)
        lan.remove()
        for line in sandbox.sweep(only_mine=True):
            print("removed", line)
        subprocess.run(["rm", "-rf", workdir], check=False)


if __name__ == "__main__":
    sys.exit(main())
