"""Nothing lost, against an adversary: every destructive path asks one question
(:mod:`salt_kvm.depends`: who depends on these bytes), whatever the spelling
of the path, the state of the pool or of the VM, or where the dependent lives.

Each test here failed on f34982e (the guards compared path strings, looked at
running pools and live VM definitions only, and a merge checked nothing).
The stateful search for further variants is in ``test_data_safety_search.py``.
"""

import os
import subprocess

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import sandbox
from tests.support.images import qemu_img, reads, sha, spell, write_pattern


@pytest.fixture
def workdir(names):
    path = sandbox.files_dir(names("w-"))
    try:
        yield path
    finally:
        mnt = os.path.join(path, "bind")
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt], check=False)


@pytest.fixture
def two_pools(conn, names):
    """Two running dir pools: ``[(name, path), (name, path)]``."""
    out = []
    for _ in range(2):
        name = names("p-")
        _pool, path = sandbox.make_dir_pool(conn, name=name)
        out.append((name, path))
    return out


SPELLINGS = ["plain", "slashes", "dot", "symlink", "bind"]


@pytest.mark.parametrize("how", SPELLINGS)
@pytest.mark.parametrize("running", [False, True], ids=["shut-off", "running"])
def test_a_vm_disk_is_in_use_whatever_the_spelling_of_its_path(
    kvm, kvm_state, tiny_vm, two_pools, workdir, how, running
):
    (pname, path), _ = two_pools
    kvm.volume_create(pname, "disk.qcow2", "16M")
    disk = os.path.join(path, "disk.qcow2")
    write_pattern(disk, 7, 0)
    dom, _ = tiny_vm(disk=spell(disk, how, workdir), start=running)
    before = sha(disk) if not running else None
    assert kvm.volume_show(pname, "disk.qcow2")["used_by"] == [dom.name()]
    for call in (
        lambda: kvm.volume_delete(pname, "disk.qcow2"),
        lambda: kvm.volume_wipe(pname, "disk.qcow2"),
        lambda: kvm.pool_delete(pname),
    ):
        with pytest.raises(CommandExecutionError, match=f"used by .*{dom.name()}"):
            call()
    for test in (True, False):
        ret = kvm_state.volume_absent("disk.qcow2", pool=pname, test=test)
        assert ret["result"] is False and dom.name() in ret["comment"], ret
        ret = kvm_state.pool_absent(pname, purge=True, test=test)
        assert ret["result"] is False and dom.name() in ret["comment"], ret
    assert os.path.exists(disk) and reads(disk, {0: 7})[0]
    if before:
        assert sha(disk) == before


def test_a_symlinked_pool_target_is_the_same_pool(conn, kvm, tiny_vm, names, workdir):
    real = sandbox.files_dir(names("real-"))
    link = os.path.join(workdir, "pool-link")
    os.symlink(real, link)
    pname = names("p-")
    from lxml import etree  # pylint: disable=import-outside-toplevel

    pool_el = etree.Element("pool", type="dir")
    etree.SubElement(pool_el, "name").text = pname
    etree.SubElement(etree.SubElement(pool_el, "target"), "path").text = link
    conn.storagePoolDefineXML(etree.tostring(pool_el, encoding="unicode"), 0).create(0)
    kvm.volume_create(pname, "d.qcow2", "8M")
    dom, _ = tiny_vm(disk=os.path.join(real, "d.qcow2"))
    assert kvm.volume_show(pname, "d.qcow2")["used_by"] == [dom.name()]
    with pytest.raises(CommandExecutionError, match="used by VM"):
        kvm.volume_delete(pname, "d.qcow2")


def test_purging_a_pool_whose_volume_backs_a_volume_elsewhere_is_refused(kvm, kvm_state, two_pools):
    (p1, path1), (p2, _path2) = two_pools
    kvm.volume_create(p1, "base.qcow2", "16M")
    write_pattern(os.path.join(path1, "base.qcow2"), 3, 0)
    kvm.volume_create(p2, "top.qcow2", backing=os.path.join(path1, "base.qcow2"))
    with pytest.raises(CommandExecutionError, match=f"backing file of {p2}/top.qcow2"):
        kvm.volume_delete(p1, "base.qcow2")
    with pytest.raises(CommandExecutionError, match=f"backing file of {p2}/top.qcow2"):
        kvm.pool_delete(p1)
    for test in (True, False):
        ret = kvm_state.pool_absent(p1, purge=True, test=test)
        assert ret["result"] is False and f"{p2}/top.qcow2" in ret["comment"], ret
    # a stopped pool: predicted and refused the same way
    kvm.pool_stop(p1)
    for test in (True, False):
        ret = kvm_state.pool_absent(p1, purge=True, test=test)
        assert ret["result"] is False and f"{p2}/top.qcow2" in ret["comment"], ret
    assert reads(os.path.join(path1, "base.qcow2"), {0: 3})[0]
    # the pool's own overlays on its own base do not block a purge
    kvm.pool_start(p1)
    kvm.volume_delete(p2, "top.qcow2")
    kvm.volume_create(p1, "own.qcow2", backing="base.qcow2")
    assert kvm_state.pool_absent(p1, purge=True)["result"] is True


@pytest.mark.parametrize("where", ["outside-any-pool", "stopped-pool"])
def test_a_base_under_an_overlay_nobody_lists_is_kept(
    kvm, kvm_state, tiny_vm, two_pools, workdir, where
):
    (p1, path1), (p2, path2) = two_pools
    kvm.volume_create(p1, "base.qcow2", "16M")
    base = os.path.join(path1, "base.qcow2")
    overlay = os.path.join(workdir if where == "outside-any-pool" else path2, "overlay.qcow2")
    # the overlay names its base through a symlinked directory: no string matches
    qemu_img(
        "create", "-q", "-f", "qcow2", "-b", spell(base, "symlink", workdir), "-F", "qcow2", overlay
    )
    if where == "stopped-pool":
        kvm.pool_refresh(p2)
        kvm.pool_stop(p2)
    else:
        dom, _ = tiny_vm(disk=overlay)  # shut off: its inactive XML has no <backingStore>
        assert "backingStore" not in dom.XMLDesc(0) or where != "outside-any-pool"
    with pytest.raises(CommandExecutionError, match="backing file of"):
        kvm.volume_delete(p1, "base.qcow2")
    for test in (True, False):
        ret = kvm_state.volume_absent("base.qcow2", pool=p1, test=test)
        assert ret["result"] is False and "backing file of" in ret["comment"], ret
    assert os.path.exists(base)


def test_a_merge_never_rewrites_a_base_another_volume_builds_on(kvm, tiny_vm, two_pools):
    (p1, path1), (p2, path2) = two_pools
    kvm.volume_create(p1, "vm.qcow2", "16M")
    disk = os.path.join(path1, "vm.qcow2")
    write_pattern(disk, 1, 0)
    dom, _ = tiny_vm(disk=disk)
    kvm.volume_create(p2, "child.qcow2", backing=disk)
    child = os.path.join(path2, "child.qcow2")
    snap = kvm.snapshot_create(dom.name(), "ext", memory=False, disk_only=True, external=True)
    overlay = snap["disks"][0]["file"]
    write_pattern(overlay, 9, 65536)  # the VM writes after the snapshot
    before = sha(disk)
    with pytest.raises(CommandExecutionError, match="child.qcow2"):
        kvm.snapshot_delete(dom.name(), "ext")
    assert sha(disk) == before
    ok, out = reads(child, {0: 1, 65536: 0})
    assert ok, out
    # once the other volume is gone, the merge goes through and the VM keeps its writes
    kvm.volume_delete(p2, "child.qcow2")
    kvm.snapshot_delete(dom.name(), "ext")
    assert not os.path.exists(overlay)
    ok, out = reads(disk, {0: 1, 65536: 9})
    assert ok, out


def test_a_merge_is_refused_while_another_vm_runs_on_the_base(kvm, tiny_vm, two_pools):
    (p1, path1), _ = two_pools
    kvm.volume_create(p1, "shared.qcow2", "16M")
    disk = os.path.join(path1, "shared.qcow2")
    dom, _ = tiny_vm(disk=disk)
    other, _ = tiny_vm(disk=spell(disk, "dot", path1))
    kvm.snapshot_create(dom.name(), "ext", memory=False, disk_only=True, external=True)
    with pytest.raises(CommandExecutionError, match=other.name()):
        kvm.snapshot_delete(dom.name(), "ext")


def test_changing_a_pool_keeps_the_xml_salt_kvm_does_not_model(conn, kvm_state, names):
    """A dir pool defined by hand with ``<permissions>`` (mode 0750, owner and group):
    a declared change of its target keeps them (libvirt makes the new directory with
    them), and the diff shows the real definition on both sides."""
    name = names("p-")
    old = sandbox.files_dir(names("a-"))
    os.chmod(old, 0o750)
    new = os.path.join(sandbox.files_dir(names("b-")), "images")
    from lxml import etree  # pylint: disable=import-outside-toplevel

    pool_el = etree.Element("pool", type="dir")
    etree.SubElement(pool_el, "name").text = name
    target = etree.SubElement(pool_el, "target")
    etree.SubElement(target, "path").text = old
    perms = etree.SubElement(target, "permissions")
    etree.SubElement(perms, "mode").text = "0750"
    etree.SubElement(perms, "owner").text = "0"
    etree.SubElement(perms, "group").text = "0"
    conn.storagePoolDefineXML(etree.tostring(pool_el, encoding="unicode"), 0).create(0)
    for test in (True, False):
        ret = kvm_state.pool_present(name, type="dir", target=new, test=test)
        assert ret["result"] is not False, ret["comment"]
        diff = ret["comment"]
        assert "<mode>0750</mode>" in diff and not any(
            line.startswith("-") and "mode" in line for line in diff.splitlines()
        ), diff
    xml = conn.storagePoolLookupByName(name).XMLDesc(1)
    assert "<mode>0750</mode>" in xml and f"<path>{new}</path>" in xml, xml
    assert oct(os.stat(new).st_mode & 0o777) == oct(0o750)
    assert kvm_state.pool_present(name, type="dir", target=new)["changes"] == {}


def test_a_disk_named_by_pool_and_volume_is_in_use(conn, kvm, two_pools, names):
    """``<disk type='volume'><source pool= volume=>``: no path at all in the VM's XML."""
    (pname, _path), _ = two_pools
    kvm.volume_create(pname, "byname.qcow2", "8M")
    from lxml import etree  # pylint: disable=import-outside-toplevel

    name = names("vm-")
    root = etree.fromstring(sandbox.tiny_vm_xml(name, "/nonexistent"))
    disk = root.find("devices/disk")
    disk.set("type", "volume")
    source = disk.find("source")
    del source.attrib["file"]
    source.set("pool", pname)
    source.set("volume", "byname.qcow2")
    conn.defineXML(etree.tostring(root, encoding="unicode"))
    try:
        assert kvm.volume_show(pname, "byname.qcow2")["used_by"] == [name]
        with pytest.raises(CommandExecutionError, match=f"used by VM {name}"):
            kvm.volume_delete(pname, "byname.qcow2")
    finally:
        sandbox.remove_vm(conn, name)
