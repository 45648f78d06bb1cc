"""Snapshots of real tiny VMs under the real libvirtd, through the ``kvm`` modules.

Data is proven with markers: ``qemu-io`` writes a byte pattern into the VM's
current image while the VM is shut off, and reads it back (``-U``, also while
the VM runs) after a revert or a merge.
"""

import os
import subprocess

import libvirt
import pytest
from lxml import etree
from salt.exceptions import CommandExecutionError, SaltInvocationError

OLD, NEW, NEWER = 0x11, 0x22, 0x33
MARK = "0 64k"


def qemu_io(path, command, readonly=False):
    cmd = ["qemu-io", "-f", "qcow2" if not path.endswith(".img") else "raw"]
    if readonly:
        cmd += ["-r", "-U"]
    proc = subprocess.run(
        [*cmd, "-c", command, path], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout + proc.stderr


def write_mark(path, pattern):
    out = qemu_io(path, f"write -P {pattern} {MARK}")
    assert "wrote 65536/65536" in out, out


def has_mark(path, pattern):
    out = qemu_io(path, f"read -P {pattern} {MARK}", readonly=True)
    return "Pattern verification failed" not in out and "read 65536/65536" in out


def disk_source(dom, inactive=False):
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)
    return etree.fromstring(xml).find("devices/disk/source").get("file")


def img_check(path):
    proc = subprocess.run(
        ["qemu-img", "check", "-U", path], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No errors were found" in proc.stdout, proc.stdout


def backing_of(path):
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json  # pylint: disable=import-outside-toplevel

    return json.loads(out).get("backing-filename")


def stopped_vm_with_mark(tiny_vm, start):
    """A VM whose disk holds the OLD marker; started when ``start``."""
    dom, disk = tiny_vm()
    write_mark(disk, OLD)
    if start:
        dom.create()
    return dom, disk


def stop_and_write(dom, pattern):
    if dom.isActive():
        dom.destroy()
    top = disk_source(dom, inactive=True)
    write_mark(top, pattern)
    return top


def files_in(disk):
    return sorted(os.listdir(os.path.dirname(disk)))


# --- every kind ------------------------------------------------------------


@pytest.mark.parametrize("start", [True, False], ids=["running", "shutoff"])
def test_internal_create_list_tree_revert_delete(kvm, tiny_vm, start):
    dom, disk = stopped_vm_with_mark(tiny_vm, start)
    vm = dom.name()
    snap = kvm.snapshot_create(vm, "s1", description="before")
    assert snap["kind"] == "internal"
    assert snap["memory"] is start
    assert snap["state"] == ("running" if start else "shutoff")
    assert snap["disks"] == [{"disk": "vda", "kind": "internal", "file": disk}]
    second = kvm.snapshot_create(vm)  # default name: the UTC time
    assert second["name"][:2] == "20" and second["parent"] == "s1"
    listed = kvm.snapshot_list(vm)
    assert [s["name"] for s in listed] == ["s1", second["name"]]
    assert listed[0]["description"] == "before" and listed[0]["children"] == [second["name"]]
    assert listed[1]["current"] is True and listed[0]["current"] is False
    tree = kvm.snapshot_tree(vm)
    assert [n["name"] for n in tree] == ["s1"] and tree[0]["children"][0]["name"] == second["name"]
    assert "<domainsnapshot>" in kvm.snapshot_show(vm, "s1")["xml"]

    stop_and_write(dom, NEW)
    assert has_mark(disk, NEW)
    result = kvm.snapshot_revert(vm, "s1")
    assert result["state"] == ("running" if start else "shutoff")
    assert has_mark(disk, OLD)
    assert kvm.snapshot_list(vm)[0]["current"] is True

    assert kvm.snapshot_delete(vm, "s1") == {"deleted": ["s1"], "merged": []}
    assert [s["name"] for s in kvm.snapshot_list(vm)] == [second["name"]]
    assert kvm.snapshot_list(vm)[0]["parent"] is None
    kvm.snapshot_delete(vm, second["name"])
    assert kvm.snapshot_list(vm) == []
    assert disk_source(dom, inactive=True) == disk
    img_check(disk)


@pytest.mark.parametrize(
    "start,args,memory,state",
    [
        (True, {"memory": False}, False, "disk-snapshot"),
        (True, {"external": True}, True, "running"),
        (False, {"external": True}, False, "shutoff"),
    ],
    ids=["running-disk-only", "running-with-memory", "shutoff"],
)
def test_external_create_revert_delete_merges(kvm, tiny_vm, start, args, memory, state):
    dom, disk = stopped_vm_with_mark(tiny_vm, start)
    vm = dom.name()
    snap = kvm.snapshot_create(vm, "e1", **args)
    assert snap["kind"] == "external" and snap["memory"] is memory and snap["state"] == state
    overlay = snap["disks"][0]["file"]
    assert snap["disks"][0]["base"] == disk and overlay != disk
    assert disk_source(dom, inactive=True) == overlay
    assert os.path.exists(overlay) and backing_of(overlay) == disk
    if memory:
        assert os.path.exists(snap["memory_file"])
    listed = kvm.snapshot_list(vm)
    assert [(s["name"], s["kind"], s["current"]) for s in listed] == [("e1", "external", True)]
    assert (
        kvm.snapshot_tree(vm)[0]["name"] == "e1"
        and kvm.snapshot_show(vm, "e1")["disks"] == snap["disks"]
    )

    # revert: the overlay's new data is gone, the VM ends in the snapshot's state
    stop_and_write(dom, NEW)
    assert has_mark(overlay, NEW)
    result = kvm.snapshot_revert(vm, "e1")
    assert result["state"] == ("running" if memory else "shutoff")
    assert has_mark(overlay, OLD)

    # delete: the newest data is merged into the original image, nothing is left behind
    stop_and_write(dom, NEWER)
    if start:
        dom.create()
    deleted = kvm.snapshot_delete(vm, "e1")
    assert deleted["deleted"] == ["e1"]
    assert kvm.snapshot_list(vm) == []
    assert disk_source(dom, inactive=True) == disk
    if start:
        assert disk_source(dom) == disk
    assert not os.path.exists(overlay)
    if memory:
        assert not os.path.exists(snap["memory_file"])
    assert has_mark(disk, NEWER)
    img_check(disk)
    assert bool(dom.isActive()) is start


def test_revert_a_running_vm_and_the_running_override(kvm, tiny_vm):
    dom, _disk = tiny_vm(start=True)
    vm = dom.name()
    kvm.snapshot_create(vm, "ram")
    assert kvm.snapshot_revert(vm, "ram")["state"] == "running"  # reverted while it runs
    assert kvm.snapshot_revert(vm, "ram", running=False)["state"] == "shutoff"
    dom.create()
    kvm.snapshot_delete(vm, "ram")
    kvm.snapshot_create(vm, "ext-ram", external=True)
    assert (
        kvm.snapshot_revert(vm, "ext-ram")["state"] == "running"
    )  # RAM restored from the memory file
    kvm.snapshot_delete(vm, "ext-ram")
    kvm.snapshot_create(vm, "disk", memory=False)
    assert kvm.snapshot_revert(vm, "disk")["state"] == "shutoff"  # no RAM to restore
    assert kvm.snapshot_revert(vm, "disk", running=True)["state"] == "running"
    kvm.snapshot_delete(vm, "disk")
    assert kvm.snapshot_list(vm) == [] and dom.isActive()


@pytest.mark.parametrize("start", [True, False], ids=["running", "shutoff"])
def test_external_delete_libvirt_refuses_is_merged(kvm, tiny_vm, start):
    dom, disk = stopped_vm_with_mark(tiny_vm, start)
    vm = dom.name()
    kvm.snapshot_create(vm, "i1")
    ext = kvm.snapshot_create(vm, "e1", external=True, memory=False)
    overlay = ext["disks"][0]["file"]
    assert ext["parent"] == "i1"
    # libvirt alone refuses (Debian 12's 9.0); nothing changes when it does
    with pytest.raises(libvirt.libvirtError, match="internal snapshot as parent"):
        dom.snapshotLookupByName("e1").delete(0)
    stop_and_write(dom, NEW)
    if start:
        dom.create()
    result = kvm.snapshot_delete(vm, "e1")
    assert result == {"deleted": ["e1"], "merged": ["e1"]}
    assert [s["name"] for s in kvm.snapshot_list(vm)] == ["i1"]
    assert disk_source(dom, inactive=True) == disk
    if start:
        assert disk_source(dom) == disk and dom.isActive()
    assert not os.path.exists(overlay)
    assert files_in(disk) == ["disk.qcow2"]
    assert has_mark(disk, NEW)
    img_check(disk)
    # the internal snapshot below still works
    kvm.snapshot_revert(vm, "i1")
    assert has_mark(disk, OLD)
    kvm.snapshot_delete(vm, "i1")
    assert kvm.snapshot_list(vm) == []


@pytest.mark.parametrize("start", [True, False], ids=["running", "shutoff"])
def test_external_chain_middle_merge(kvm, tiny_vm, start):
    dom, disk = stopped_vm_with_mark(tiny_vm, start)
    vm = dom.name()
    e1 = kvm.snapshot_create(vm, "e1", external=True, memory=False)["disks"][0]["file"]
    stop_and_write(dom, NEW)
    if start:
        dom.create()
    e2 = kvm.snapshot_create(vm, "e2", external=True, memory=False)["disks"][0]["file"]
    stop_and_write(dom, NEWER)
    if start:
        dom.create()
    # deleting the older one merges the middle of the chain
    kvm.snapshot_delete(vm, "e1")
    assert not os.path.exists(e1)
    assert backing_of(e2) == disk
    listed = kvm.snapshot_list(vm)
    assert [s["name"] for s in listed] == ["e2"] and listed[0]["disks"][0]["base"] == disk
    assert disk_source(dom, inactive=True) == e2
    assert has_mark(disk, NEW) and has_mark(e2, NEWER)
    img_check(e2)
    kvm.snapshot_delete(vm, "e2")
    assert disk_source(dom, inactive=True) == disk and files_in(disk) == ["disk.qcow2"]
    assert has_mark(disk, NEWER)
    img_check(disk)


def test_children_delete_removes_the_subtree(kvm, tiny_vm):
    dom, disk = stopped_vm_with_mark(tiny_vm, start=False)
    vm = dom.name()
    kvm.snapshot_create(vm, "a")
    kvm.snapshot_create(vm, "b")
    kvm.snapshot_create(vm, "c", external=True)
    result = kvm.snapshot_delete(vm, "a", children=True)
    assert result["deleted"] == ["c", "b", "a"]
    assert kvm.snapshot_list(vm) == []
    assert disk_source(dom, inactive=True) == disk and files_in(disk) == ["disk.qcow2"]


# --- refusals and errors: a clear message, nothing changed -------------------


def _host_view(dom):
    return (
        [s.getName() for s in dom.listAllSnapshots(0)],
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
        files_in(disk_source(dom, inactive=True)),
    )


def test_errors_change_nothing(kvm, tiny_vm):
    dom, disk = tiny_vm(start=True)
    vm = dom.name()
    kvm.snapshot_create(vm, "keep")
    before = _host_view(dom)
    with pytest.raises(CommandExecutionError, match="VM 'kvt-nope-x' does not exist"):
        kvm.snapshot_list("kvt-nope-x")
    with pytest.raises(CommandExecutionError, match="VM 'kvt-nope-x' does not exist"):
        kvm.snapshot_create("kvt-nope-x", "s")
    with pytest.raises(CommandExecutionError, match=f"VM '{vm}' has no snapshot 'nope'"):
        kvm.snapshot_revert(vm, "nope")
    with pytest.raises(CommandExecutionError, match=f"VM '{vm}' has no snapshot 'nope'"):
        kvm.snapshot_delete(vm, "nope")
    with pytest.raises(CommandExecutionError, match="has no guest agent channel"):
        kvm.snapshot_create(vm, "q", quiesce=True)
    with pytest.raises(CommandExecutionError, match="already has a snapshot 'keep'"):
        kvm.snapshot_create(vm, "keep")
    with pytest.raises(SaltInvocationError, match="snapshot: 'bad/name' is not a snapshot name"):
        kvm.snapshot_create(vm, "bad/name")
    with pytest.raises(SaltInvocationError, match="memory: 'maybe' is not true or false"):
        kvm.snapshot_create(vm, "m", memory="maybe")
    assert _host_view(dom) == before


def test_internal_snapshot_of_a_raw_disk_is_refused(kvm, tiny_vm):
    dom, disk = tiny_vm(disk_format="raw")
    vm = dom.name()
    before = _host_view(dom)
    with pytest.raises(
        CommandExecutionError,
        match=r"internal snapshots need qcow2 disks: disk vda .* is raw .*external=True",
    ):
        kvm.snapshot_create(vm, "s")
    assert _host_view(dom) == before
    # an external one works on raw, and merging it writes back into the raw image
    snap = kvm.snapshot_create(vm, "e", external=True)
    assert backing_of(snap["disks"][0]["file"]) == disk
    kvm.snapshot_delete(vm, "e")
    assert disk_source(dom, inactive=True) == disk and kvm.snapshot_list(vm) == []


def test_combinations_that_break_later_are_refused(kvm, tiny_vm):
    dom, disk = stopped_vm_with_mark(tiny_vm, start=True)
    vm = dom.name()
    kvm.snapshot_create(vm, "i1")
    kvm.snapshot_create(vm, "e1", memory=False)
    kvm.snapshot_create(vm, "e2", memory=False)
    before = _host_view(dom)
    with pytest.raises(CommandExecutionError, match="would be stored inside that overlay"):
        kvm.snapshot_create(vm, "i2")
    with pytest.raises(CommandExecutionError, match="external snapshot\\(s\\) 'e1' are built on"):
        kvm.snapshot_revert(vm, "i1")
    with pytest.raises(CommandExecutionError, match="'e2' were taken on top of its overlay"):
        kvm.snapshot_revert(vm, "e1")
    with pytest.raises(
        CommandExecutionError, match="libvirt cannot delete internal snapshot 'i1' while VM"
    ):
        kvm.snapshot_delete(vm, "i1")
    assert _host_view(dom) == before
    assert dom.isActive()


# --- prune and the states ----------------------------------------------------


def test_prune_only_touches_the_prefix(kvm, tiny_vm):
    dom, _disk = tiny_vm()
    vm = dom.name()
    for name in ("mine", "auto-1", "auto-2", "auto-3"):
        kvm.snapshot_create(vm, name)
    result = kvm.snapshot_prune(vm, keep=1)
    assert result["deleted"] == ["auto-1", "auto-2"] and result["kept"] == ["auto-3"]
    assert kvm.snapshot_prune(vm, keep=0, older_than="1d")["deleted"] == []
    assert sorted(s["name"] for s in kvm.snapshot_list(vm)) == ["auto-3", "mine"]


def test_snapshot_present_and_absent(kvm, kvm_state, tiny_vm, testmode):
    dom, _disk = tiny_vm(start=True)
    vm = dom.name()
    ret = kvm_state.snapshot_present(vm, snapshot="before", test=testmode)
    assert ret.result is (None if testmode else True), ret.comment
    assert ret.changes == {
        "snapshot": {"old": None, "new": {"name": "before", "kind": "internal", "memory": True}}
    }
    names = [s["name"] for s in kvm.snapshot_list(vm)]
    assert names == ([] if testmode else ["before"])
    if testmode:
        return
    again = kvm_state.snapshot_present(vm, snapshot="before", memory=False)
    assert again.result is True and again.changes == {}
    assert [s["name"] for s in kvm.snapshot_list(vm)] == ["before"]
    gone = kvm_state.snapshot_absent(vm, snapshot="before", test=True)
    assert gone.result is None and "removed" in gone.changes
    assert [s["name"] for s in kvm.snapshot_list(vm)] == ["before"]
    gone = kvm_state.snapshot_absent(vm, snapshot="before")
    assert gone.result is True and "removed" in gone.changes
    assert kvm_state.snapshot_absent(vm, snapshot="before").changes == {}
    bad = kvm_state.snapshot_present("kvt-nope-x", snapshot="x")
    assert bad.result is False and "does not exist" in bad.comment
    raw = kvm_state.snapshot_present(vm, snapshot="x", quiesce=True)
    assert raw.result is False and "guest agent" in raw.comment


@pytest.mark.parametrize(
    "start,extra",
    [(False, {}), (True, {"memory": False})],
    ids=["shutoff-internal", "running-external"],
)
def test_snapshots_retained_rolls(kvm, kvm_state, tiny_vm, start, extra):
    import time  # pylint: disable=import-outside-toplevel

    dom, disk = tiny_vm(start=start)
    vm = dom.name()
    kvm.snapshot_create(vm, "hand-made", **extra)
    args = dict({"every": "1s", "keep": 2, "prefix": "auto-"}, **extra)
    taken = []
    for _ in range(3 if extra else 4):
        preview = kvm_state.snapshots_retained(vm, test=True, **args)
        assert preview.result is None and "taken" in preview.changes
        assert len(kvm.snapshot_list(vm)) == 1 + min(len(taken), 2)
        ret = kvm_state.snapshots_retained(vm, **args)
        assert ret.result is True, ret.comment
        taken.append(ret.changes["taken"]["new"])
        if len(taken) > 2:
            assert ret.changes["deleted"]["old"] == [taken[-3]]
        names = sorted(s["name"] for s in kvm.snapshot_list(vm))
        assert names == sorted(["hand-made"] + taken[-2:])
        time.sleep(1.1)
    # within `every` nothing is taken
    ret = kvm_state.snapshots_retained(vm, every="1h", keep=2, **extra)
    assert ret.result is True and ret.changes == {}
    if extra:  # the pruned external snapshots were merged: the chain is as long as what is left
        assert bool(dom.isActive())
        overlays = [s["disks"][0]["file"] for s in kvm.snapshot_list(vm)]
        assert sorted(files_in(disk)) == sorted(
            ["disk.qcow2"] + [os.path.basename(o) for o in overlays]
        )
        img_check(disk_source(dom))
    bad = kvm_state.snapshots_retained(vm, every="soon", keep=2)
    assert bad.result is False and "'soon' is not a duration" in bad.comment


def test_formula_state_apply_kvm_snapshots(tiny_vm, tmp_path):
    """The real ``salt-call state.apply kvm.snapshots`` with a ``kvm:snapshots`` pillar."""
    from tests.conftest import REPO  # pylint: disable=import-outside-toplevel
    from tests.support.saltcall import SaltCall, changed  # pylint: disable=import-outside-toplevel

    dom, _disk = tiny_vm()
    vm = dom.name()
    dom.snapshotCreateXML("<domainsnapshot><name>hand-made</name></domainsnapshot>", 0)
    # PYTHONPATH: this checkout's salt_kvm (and so its loader modules), not an installed copy
    call = SaltCall(
        tmp_path,
        file_roots=[REPO],
        pillar={"snapshots": {vm: {"every": "1h", "keep": 2}}},
        env={"PYTHONPATH": str(REPO)},
    )
    code, data, err = call.run("state.apply", "kvm.snapshots", "test=True")
    assert code == 0, (data, err)
    preview = changed(data)
    assert list(preview) == [f"kvm-snapshots-{vm}"] and "taken" in preview[f"kvm-snapshots-{vm}"]
    assert [s.getName() for s in dom.listAllSnapshots(0)] == ["hand-made"]
    code, data, err = call.run("state.apply", "kvm.snapshots")
    assert code == 0, (data, err)
    taken = changed(data)[f"kvm-snapshots-{vm}"]["taken"]["new"]
    assert taken.startswith("auto-")
    code, data, err = call.run("state.apply", "kvm.snapshots")
    assert code == 0 and changed(data) == {}, (data, err)
    assert sorted(s.getName() for s in dom.listAllSnapshots(0)) == sorted(["hand-made", taken])
    call.set_pillar({"snapshots": {vm: {"every": "1h", "keep": "many"}}})
    code, data, err = call.run("state.apply", "kvm.snapshots")
    assert code != 0 and f"kvm:snapshots:{vm}:keep" in str(data) + err
