"""VMs declared like the rest of the host, against the real libvirtd.

Tiny VMs without an OS (they idle in the firmware) serve where only libvirt's
view matters: the definition, its in-place edits, the run state, the guards
on volumes. What a guest sees is for the real-guest tests.
"""

import os

import pytest
from lxml import etree
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import sandbox
from tests.support.images import reads, write_pattern

M = 1024**2


@pytest.fixture
def pool(conn, names):
    """A running dir pool with volumes ``a.qcow2`` and ``b.qcow2``: ``(name, path)``."""
    name = names("p-")
    _obj, path = sandbox.make_dir_pool(conn, name=name)
    for vol in ("a.qcow2", "b.qcow2"):
        sandbox.qemu_img("create", "-q", "-f", "qcow2", os.path.join(path, vol), "32M")
    conn.storagePoolLookupByName(name).refresh(0)
    return name, path


@pytest.fixture
def vm_name(conn, names):
    name = names("vm-")
    try:
        yield name
    finally:
        sandbox.remove_vm(conn, name)


def _spec(pool, **extra):
    """State arguments (the pillar's ``state`` is ``run_state``: Salt reserves ``state``)."""
    spec = {"memory": "64M", "vcpus": 1, "disks": [{"pool": pool, "volume": "a.qcow2"}], "console": {"log": True}}
    spec.update(extra)
    if "state" in spec:
        spec["run_state"] = spec.pop("state")
    return spec


def test_vm_present_defines_starts_and_converges(kvm_state, kvm, pool, vm_name, testmode):
    pname, path = pool
    spec = _spec(pname)
    predicted = kvm_state.vm_present(vm_name, test=True, **spec) if testmode else None
    if testmode:
        assert predicted["result"] is None and "vm" in predicted["changes"], predicted
        with pytest.raises(CommandExecutionError, match="does not exist"):
            kvm.vm_show(vm_name)
        return
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["state"] == {"old": None, "new": "running"} and "was defined and started" in ret["comment"]
    shown = kvm.vm_show(vm_name)
    assert shown["state"] == "running" and shown["memory"] == 64 * M and shown["vcpus"] == 1
    assert shown["disks"] == [{"target": "vda", "device": "disk", "path": os.path.join(path, "a.qcow2"), "pool": pname, "volume": "a.qcow2"}]
    assert shown["console"].endswith(f"{vm_name}.console.log")
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    assert kvm.vm_list()[vm_name]["state"] == "running"


def test_a_change_a_running_vm_cannot_take_is_pending_and_the_rest_is_kept(kvm_state, kvm, conn, pool, vm_name):
    pname, _ = pool
    assert kvm_state.vm_present(vm_name, **_spec(pname))["result"] is True
    dom = conn.lookupByName(vm_name)
    # what the pillar does not model, added by hand: a <metadata> entry and a watchdog
    root = etree.fromstring(dom.XMLDesc(2))
    meta = etree.SubElement(root, "metadata")
    etree.SubElement(meta, "{https://example.org/kvt}note").text = "hand-made"
    etree.SubElement(root.find("devices"), "watchdog", model="i6300esb", action="reset")
    conn.defineXML(etree.tostring(root, encoding="unicode"))
    spec = _spec(pname, memory="96M", disks=[{"pool": pname, "volume": "a.qcow2"}, {"pool": pname, "volume": "b.qcow2"}])
    predicted = kvm_state.vm_present(vm_name, test=True, **spec)
    ret = kvm_state.vm_present(vm_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    assert ret["changes"]["memory"] == {"old": "64 MiB", "new": "96 MiB"} and ret["bytes"]["memory"] == {"old": 64 * M, "new": 96 * M}
    assert "pending" in ret["changes"]["restart"]["new"]
    assert "takes effect when it restarts" in ret["comment"]
    inactive = dom.XMLDesc(2)
    assert "hand-made" in inactive and "i6300esb" in inactive and "b.qcow2" in inactive
    assert dom.info()[1] == 64 * 1024, "the running VM was changed live"
    again = kvm_state.vm_present(vm_name, **spec)
    assert again["result"] is True and again["changes"] == {}, again
    # the restart happens at the next start: stopped and started, the VM runs as declared
    kvm.vm_stop(vm_name)
    kvm.vm_start(vm_name)
    assert dom.info()[1] == 96 * 1024 and len(kvm.vm_show(vm_name)["disks"]) == 2
    # a disk removed from the pillar is detached; its volume stays
    ret = kvm_state.vm_present(vm_name, **_spec(pname, memory="96M", state="stopped"))
    assert ret["result"] is True and ret["changes"].get("state") == {"old": "running", "new": "stopped"}, ret
    assert [d["volume"] for d in kvm.vm_show(vm_name)["disks"]] == ["a.qcow2"]
    assert "b.qcow2" in kvm.volume_list(pname)


def test_vm_absent_keeps_volumes_and_purge_keeps_what_others_need(kvm_state, kvm, conn, pool, vm_name, names):
    pname, path = pool
    spec = _spec(pname, state="stopped", disks=[{"pool": pname, "volume": "a.qcow2"}, {"pool": pname, "volume": "b.qcow2"}])
    assert kvm_state.vm_present(vm_name, **spec)["result"] is True
    write_pattern(os.path.join(path, "a.qcow2"), 3, 0)
    # another image is built on a.qcow2: purging must keep it
    kvm.volume_create(pname, "child.qcow2", backing="a.qcow2")
    predicted = kvm_state.vm_absent(vm_name, purge=True, test=True)
    assert predicted["result"] is None and predicted["changes"]["volumes"] == {"old": [f"{pname}/b.qcow2"], "new": None}, predicted
    assert "child.qcow2" in predicted["comment"]
    ret = kvm_state.vm_absent(vm_name, purge=True)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["volumes"] == predicted["changes"]["volumes"]
    vols = kvm.volume_list(pname)
    assert "a.qcow2" in vols and "b.qcow2" not in vols
    ok, out = reads(os.path.join(path, "child.qcow2"), {0: 3})
    assert ok, out
    assert kvm_state.vm_absent(vm_name)["comment"].endswith("is already absent")
    # without purge every volume stays
    other = names("vm-")
    assert kvm_state.vm_present(other, **_spec(pname, state="stopped"))["result"] is True
    ret = kvm_state.vm_absent(other)
    assert ret["result"] is True and "volumes are kept" in ret["comment"]
    assert "a.qcow2" in kvm.volume_list(pname)


def test_run_state_and_execution_functions(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    assert kvm_state.vm_present(vm_name, **_spec(pname, state="paused"))["result"] is True
    assert kvm.vm_show(vm_name)["state"] == "paused"
    assert kvm.vm_start(vm_name) is True and kvm.vm_show(vm_name)["state"] == "running"
    # a guest without an OS ignores ACPI: a clear error, then power-off only with force
    with pytest.raises(CommandExecutionError, match="did not shut down within 1s"):
        kvm.vm_shutdown(vm_name, timeout=1)
    assert kvm.vm_shutdown(vm_name, timeout=1, force=True) is True and kvm.vm_show(vm_name)["state"] == "shutoff"
    with pytest.raises(CommandExecutionError, match="is not running"):
        kvm.vm_reboot(vm_name)
    assert kvm.vm_autostart(vm_name) is True and kvm.vm_show(vm_name)["autostart"] is True
    assert kvm.vm_autostart(vm_name, enabled=False) is True and kvm.vm_show(vm_name)["autostart"] is False
    assert isinstance(kvm.vm_console(vm_name, lines=5), str)
    ret = kvm_state.vm_present(vm_name, **_spec(pname, state="stopped"))
    assert ret["result"] is True and ret["changes"] == {}, ret
    gone = kvm.vm_undefine(vm_name)
    assert gone == {"removed": vm_name, "deleted": [], "kept": []}
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.vm_show(vm_name)


def test_bad_input_names_the_field_and_changes_nothing(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    for spec, message in [
        (_spec(pname, memory="2X"), f"{vm_name}:memory: '2X' is not a size"),
        (_spec(pname, vcpus=0), f"{vm_name}:vcpus"),
        (_spec(pname, disks=[{"pool": "kvt-nope", "volume": "a.qcow2"}]), f"{vm_name}:disks:0:pool: pool 'kvt-nope' does not exist"),
        (_spec(pname, disks=[{"pool": pname, "volume": "zz.qcow2"}]), f"{vm_name}:disks:0:volume: volume 'zz.qcow2' does not exist"),
        (_spec(pname, nics=[{"bridge": "br0", "network": "default"}]), "exactly one of bridge and network"),
    ]:
        ret = kvm_state.vm_present(vm_name, **spec)
        assert ret["result"] is False and message in ret["comment"], (spec, ret["comment"])
        with pytest.raises(CommandExecutionError, match="does not exist"):
            kvm.vm_show(vm_name)
    with pytest.raises(SaltInvocationError, match="memory"):
        kvm.vm_define(vm_name, memory="lots", vcpus=1)


def test_a_vm_disk_declared_here_is_guarded_like_any_other(kvm_state, kvm, pool, vm_name):
    pname, _ = pool
    assert kvm_state.vm_present(vm_name, **_spec(pname, state="stopped"))["result"] is True
    with pytest.raises(CommandExecutionError, match=f"used by VM {vm_name}"):
        kvm.volume_delete(pname, "a.qcow2")
