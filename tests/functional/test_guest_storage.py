"""Storage as a real guest sees it: ``kvm.volume_*`` on volumes a running or
booted guest (tests/support/guest.py) reads."""

import subprocess
import uuid

import libvirt
import pytest

from tests.support import sandbox

MIB = 1024 * 1024


def _path(kvm, pool, name):
    return kvm.volume_show(pool, name)["path"]


def test_online_grow_is_seen_by_the_guest(kvm, guests, dir_pool):
    """Catches: a grow done on the image file under a running guest (``qemu-img resize`` / a
    storage-driver resize) instead of through the guest's QEMU: the guest never sees it."""
    pool, _dir = dir_pool
    kvm.volume_create(pool, "grow.qcow2", "64M", format="qcow2")
    g = guests(disks=[(_path(kvm, pool, "grow.qcow2"), "qcow2")], work=["size"])
    g.wait_line(f"size {64 * MIB // 512}", timeout=30)
    mark = g.offset()
    kvm.volume_resize(pool, "grow.qcow2", "96M")
    g.wait_line(f"size {96 * MIB // 512}", since=mark, timeout=30)
    assert kvm.volume_show(pool, "grow.qcow2")["capacity"] == 96 * MIB


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_wiped_volume_reads_zeros_in_a_guest(kvm, guests, dir_pool, fmt):
    """Catches: a wipe that leaves data behind, or (qcow2) one that wipes the image's own
    metadata so the guest's disk is no longer the volume it was."""
    pool, _dir = dir_pool
    name = f"wipe.{'img' if fmt == 'raw' else 'qcow2'}"
    kvm.volume_create(pool, name, "8M", format=fmt)
    path = _path(kvm, pool, name)
    out = subprocess.run(
        ["qemu-io", "-f", fmt, "-c", "write -P 0x5a 0 8M", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "wrote 8388608/8388608" in out, out
    kvm.volume_wipe(pool, name)
    g = guests(disks=[(path, fmt)], work=["scan"])
    assert g.wait_line("nonzero") == "nonzero 0", g.lines()
    assert kvm.volume_show(pool, name)["capacity"] == 8 * MIB


def test_clone_of_a_shut_off_vm_boots_a_second_guest_with_the_same_content(
    kvm, conn, guests, dir_pool
):
    """A guest stamps its disk and powers off; the clone of that disk, booted in a second guest,
    holds the stamp. Catches: a clone that copies the wrong volume, a stale or partial copy."""
    pool, _dir = dir_pool
    kvm.volume_create(pool, "src.qcow2", "32M", format="qcow2")
    token = f"kvt-{uuid.uuid4().hex[:12]}"
    first = guests(
        disks=[(_path(kvm, pool, "src.qcow2"), "qcow2")],
        work=[f"stamp:{token}", "poweroff"],
        wait_ready=False,
    )
    first.wait_line(f"stamped {token}", timeout=120)

    def gone():
        try:
            return not conn.lookupByName(first.name).isActive()
        except libvirt.libvirtError:
            return True

    assert sandbox.wait_for(gone, timeout=30), "the first guest did not power off"
    kvm.volume_clone(pool, "src.qcow2", "dst.qcow2")
    second = guests(disks=[(_path(kvm, pool, "dst.qcow2"), "qcow2")], work=["scan"])
    assert second.wait_line("head") == f"head {token}"
