"""VMs declared with ``kvm.vm_present`` as a real guest sees them.

The guest is Debian's kernel booted directly (``boot: {kernel, initrd, cmdline}``)
with the test initramfs of tests/support/guest.py: it pings the LAN's gateway
through the bridge its NIC is declared on and prints the list of its network
interfaces, its present CPUs and its MemTotal whenever they change (``KVT ifaces
eth0 lo``, ``KVT cpus 0-1``, ``KVT mem KB``), so a NIC, a vCPU or memory that the
state plugs in or takes away live shows on its serial console (``console: {log:
true}``). One guest boot for the whole story: under TCG a boot takes seconds.
"""

import time

from salt_kvm import vm as vm_mod
from tests.support import guest as guestlib
from tests.support import sandbox

BRIDGE = {"stp": False, "forward_delay": 0}


def _mem(lines):
    """The guest's MemTotal (kB) as it last printed it, or None."""
    values = [int(line.split()[1]) for line in lines if line.startswith("mem ")]
    return values[-1] if values else None


def _ifaces(lines):
    """The interface lists the guest printed, newest last."""
    return [line.split()[1:] for line in lines if line.startswith("ifaces")]


def test_declared_guest_boots_reaches_the_lan_and_takes_a_nic_live(
    kvm_state, kvm, conn, guest_image, guest_type, root_lan, vm_name
):
    """Catches: a declared VM that does not boot its kernel or is not on its declared bridge
    (no replies), a NIC added to the pillar that waits for a restart or never reaches the guest
    (no eth1), a NIC removed from the pillar that the guest keeps (eth1 stays) or that is
    reported as removed while still attached, memory or a vCPU within their maximum that wait for
    a restart (the guest's MemTotal does not grow, no second CPU),
    one above it applied anyway, a re-apply that is not a no-op."""
    assert (
        kvm_state.bridge_present(name=root_lan.bridge, ports=[root_lan.uplink], **BRIDGE)["result"]
        is True
    )
    cmdline = (
        f"console=ttyS0 quiet panic=-1 no_timer_check kvt.ip={root_lan.guest} "
        f"kvt.work=ping:{root_lan.gateway} kvt.work=ifaces kvt.work=cpus kvt.work=mem"
    )
    spec = {
        "type": guest_type,
        "memory": f"{guestlib.MEMORY_MIB - 32}M",
        "max_memory": f"{guestlib.MEMORY_MIB}M",
        "vcpus": 1,
        "max_vcpus": 2,
        "boot": {"kernel": guest_image.kernel, "initrd": guest_image.initrd, "cmdline": cmdline},
        "nics": [{"bridge": root_lan.bridge, "mac": "52:54:00:4c:00:01"}],
        "console": {"log": True},
    }
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    g = guestlib.Guest(conn.lookupByName(vm_name), vm_mod.console_path(vm_name))
    g.wait_line("ready", timeout=120 if guest_type == "qemu" else 30)
    g.wait_replies(3, timeout=60, source=root_lan.gateway)
    assert _ifaces(g.lines())[-1] == ["eth0", "lo"], g.lines()
    assert [line for line in g.lines() if line.startswith("cpus")][-1] == "cpus 0", g.lines()
    assert kvm_state.vm_present(vm_name, **spec)["changes"] == {}

    # the pillar gains a NIC and a vCPU (within max_vcpus): plugged into the running guest, no
    # restart
    mark = g.offset()
    # the balloon took the guest down to its declared memory at boot (libvirt sees it as the actual
    # size)
    dom = conn.lookupByName(vm_name)
    assert sandbox.wait_for(
        lambda: dom.info()[2] <= (guestlib.MEMORY_MIB - 31) * 1024, timeout=60
    ), dom.info()
    time.sleep(0.5)
    before = _mem(g.lines())
    more = dict(
        spec,
        memory=f"{guestlib.MEMORY_MIB}M",
        vcpus=2,
        nics=spec["nics"] + [{"bridge": root_lan.bridge, "mac": "52:54:00:4c:00:02"}],
    )
    predicted = kvm_state.vm_present(vm_name, test=True, **more)
    ret = kvm_state.vm_present(vm_name, **more)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret
    assert (
        ret["changes"]["live"]["new"]
        == [
            f"attach NIC 52:54:00:4c:00:02 on bridge {root_lan.bridge}",
            f"memory {guestlib.MEMORY_MIB} MiB",
            "vcpus 1 -> 2",
        ]
        and "restart" not in ret["changes"]
    ), ret
    g.wait(
        lambda lines: ["eth0", "eth1", "lo"] in _ifaces(lines),
        timeout=60,
        since=mark,
        what="eth1 in the guest",
    )
    g.wait_line("cpus 0-1", timeout=60, since=mark)
    grown = g.wait(
        lambda lines: _mem(lines) and _mem(lines) >= before + 24 * 1024 and _mem(lines),
        timeout=60,
        since=mark,
        what="MemTotal up by the balloon",
    )
    print(f"\nballoon: MemTotal {before} kB -> {grown} kB")
    assert kvm_state.vm_present(vm_name, **more)["changes"] == {}
    assert len(kvm.vm_show(vm_name)["nics"]) == 2

    # and loses it again: the guest answers the hot-unplug request, the NIC is gone for real
    mark = g.offset()
    fewer = dict(more, nics=spec["nics"])
    ret = kvm_state.vm_present(vm_name, **fewer)
    assert ret["result"] is True, ret
    assert (
        ret["changes"]["live"]["new"]
        == [f"detach NIC 52:54:00:4c:00:02 on bridge {root_lan.bridge}"]
        and "restart" not in ret["changes"]
    ), ret
    g.wait(
        lambda lines: ["eth0", "lo"] in _ifaces(lines),
        timeout=60,
        since=mark,
        what="eth1 gone from the guest",
    )
    assert "52:54:00:4c:00:02" not in conn.lookupByName(vm_name).XMLDesc(0)
    g.wait_replies(3, since=mark, timeout=30, source=root_lan.gateway)
    assert kvm_state.vm_present(vm_name, **fewer)["changes"] == {}

    # over the maximum: pending, the running guest keeps what it has
    over = dict(fewer, vcpus=3, max_vcpus=3)
    ret = kvm_state.vm_present(vm_name, **over)
    assert ret["result"] is True and "live" not in ret["changes"], ret
    assert (
        ret["changes"]["restart"]["new"]
        == "pending: max_vcpus 2 -> 3, vcpus 3 (above the running maximum 2) "
        "(restart: true restarts it now)"
    ), ret
    assert (
        "takes effect when it restarts" in ret["comment"]
        and conn.lookupByName(vm_name).vcpusFlags(1) == 2
    )
    assert kvm_state.vm_present(vm_name, **over)["changes"] == {}


def test_restart_true_shuts_the_guest_down_gracefully_and_applies_what_was_pending(
    kvm_state, conn, guest_image, guest_type, vm_name
):
    """A change above the running maximum waits for a restart; ``restart: true`` asks the guest
    to shut down (ACPI: the guest's acpid powers it off, saying so), starts it again, and the
    guest boots with the new vCPUs and memory. The guest boots the compressed kernel (not PVH),
    which has ACPI.

    Catches: restart: true that powers the guest off without asking it (no "acpi poweroff"
    on its console), that does not start it again, or that starts it on the old definition
    (one CPU, the old MemTotal); a restart reported while the change is still pending."""
    cmdline = "console=ttyS0 quiet panic=-1 no_timer_check kvt.work=acpi kvt.work=cpus kvt.work=mem"
    spec = {
        "type": guest_type,
        "memory": f"{guestlib.MEMORY_MIB}M",
        "vcpus": 1,
        "boot": {"kernel": guest_image.bzimage, "initrd": guest_image.initrd, "cmdline": cmdline},
        "console": {"log": True},
    }
    assert kvm_state.vm_present(vm_name, **spec)["result"] is True
    g = guestlib.Guest(conn.lookupByName(vm_name), vm_mod.console_path(vm_name))
    g.wait_line("acpid", timeout=180 if guest_type == "qemu" else 60)
    g.wait_line("cpus 0", timeout=30)
    before = g.wait(_mem, timeout=30, what="MemTotal")

    bigger = dict(spec, vcpus=2, memory=f"{guestlib.MEMORY_MIB + 64}M")
    ret = kvm_state.vm_present(vm_name, **bigger)
    assert ret["result"] is True and "pending" in ret["changes"]["restart"]["new"], ret
    mark = g.offset()
    predicted = kvm_state.vm_present(vm_name, test=True, **dict(bigger, restart=True))
    assert predicted["result"] is None and predicted["changes"]["restart"]["new"] == "restarted", (
        predicted
    )
    ret = kvm_state.vm_present(vm_name, **dict(bigger, restart=True, shutdown_timeout="120s"))
    assert ret["result"] is True and ret["changes"]["restart"] == {
        "old": "running an older definition",
        "new": "restarted",
    }, ret
    g.wait_line("acpi poweroff", timeout=30, since=mark)
    g.wait_line("cpus 0-1", timeout=180 if guest_type == "qemu" else 60, since=mark)
    after = g.wait(
        lambda lines: _mem(lines) if _mem(lines) and _mem(lines) > before + 32 * 1024 else None,
        timeout=60,
        since=mark,
        what="the bigger MemTotal",
    )
    print(f"\nrestart: MemTotal {before} kB -> {after} kB, cpus 0 -> 0-1")
    assert kvm_state.vm_present(vm_name, **dict(bigger, restart=True))["changes"] == {}
