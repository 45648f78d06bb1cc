"""A real cloud-init in a small Debian guest reads the seed ``vm_present`` builds.

The guest is the one of tests/support/guest.py booted by the VM's own declaration
(direct kernel boot: Debian's kernel and the busybox initramfs, ``kvt.work=cloudinit``):
its root filesystem is a copy-on-write child of the cached Debian image with
``cloud-init`` (:func:`tests.support.guest.rootfs`, variant ``cloud-init``; built once
with debootstrap: 3 min 39 s and a 352 MiB qcow2 here), and the initramfs runs that
filesystem's cloud-init stages in order, as systemd's units would. cloud-init's NoCloud
datasource finds the ``cidata`` CD-ROM on its own, sets the hostname from the
seed's ``local-hostname`` and runs the ``runcmd`` lines: both show on the serial
console that ``kvm.vm_console`` reads. One boot; under TCG on a 2-core host the four
stages took 2 to 5 minutes of guest uptime (the whole test 4.5 to 6 minutes).
"""

import os
import re
import time

import pytest

from salt_kvm import cloudinit
from tests.support import guest as guestlib
from tests.support import sandbox


@pytest.fixture
def seeded(conn, names, guest_image):
    """``(vm name, pool name)``: a dir pool holding ``root.qcow2``, a child of the cached
    Debian root filesystem with cloud-init."""
    try:
        base = guestlib.rootfs("cloud-init")
    except (guestlib.GuestError, OSError) as exc:
        pytest.skip(f"no Debian root filesystem with cloud-init: {exc}")
    except Exception as exc:  # noqa: BLE001  # debootstrap failed (no mirror reachable)
        pytest.skip(f"building the Debian root filesystem with cloud-init failed: {exc}")
    pool = names("p-")
    _obj, path = sandbox.make_dir_pool(conn, name=pool)
    sandbox.qemu_img(
        "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, os.path.join(path, "root.qcow2")
    )
    conn.storagePoolLookupByName(pool).refresh(0)
    name = names("ci-")
    try:
        yield name, pool
    finally:
        sandbox.remove_vm(conn, name)
        for leftover in (cloudinit.seed_path(name), f"/var/log/libvirt/qemu/{name}.console.log"):
            if os.path.exists(leftover):
                os.remove(leftover)


def test_a_real_cloud_init_reads_the_seed_of_vm_present(
    kvm_state, kvm, seeded, guest_image, guest_type
):
    name, pool = seeded
    cmdline = "console=ttyS0 quiet panic=-1 no_timer_check kvt.work=cloudinit"
    spec = {
        "type": guest_type,
        "memory": "512M",
        "vcpus": 1,
        "boot": {"kernel": guest_image.kernel, "initrd": guest_image.initrd, "cmdline": cmdline},
        "disks": [{"pool": pool, "volume": "root.qcow2"}],
        "console": {"log": True},
        "cloud_init": {
            "user_data": {
                "runcmd": ["echo KVT cloud-init ran $(hostname)"],
                "locale": False,  # the minbase image has no locales to generate
                "users": [
                    {"name": "kvt", "plain_text_passwd": "kvt-secret-0815", "lock_passwd": False}
                ],
            },
        },
    }
    predicted = kvm_state.vm_present(name, test=True, **spec)
    assert predicted["result"] is None, predicted
    ret = kvm_state.vm_present(name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"], (predicted, ret)
    assert "kvt-secret-0815" not in repr(ret)
    again = kvm_state.vm_present(name, **spec)
    assert again["result"] is True and again["changes"] == {}, again

    start, text = time.monotonic(), ""
    while time.monotonic() - start < 900:
        text = kvm.vm_console(name, lines=400)
        if "KVT cloud-init done" in text or "KVT error" in text:
            break
        time.sleep(2)
    seconds = time.monotonic() - start
    lines = [line.strip() for line in text.splitlines()]
    assert "KVT cloud-init done" in text, (
        f"cloud-init did not finish within {seconds:.0f}s; console ends:\n" + "\n".join(lines[-40:])
    )
    assert f"KVT cloud-init ran {name}" in lines, "\n".join(lines[-60:])
    # cloud-init found the NoCloud seed, not its fallback datasource
    assert re.search(r"Datasource DataSourceNoCloud \[seed=/dev/sr0\]", text), "\n".join(
        lines[-60:]
    )
    assert all(
        line.endswith(": 0") for line in lines if line.startswith("KVT cloud-init ") and ":" in line
    ), "\n".join(lines[-60:])
    assert "kvt-secret-0815" not in text
    print(f"cloud-init ran in the guest {seconds:.0f}s after vm_present ({guest_type})")
