"""dir pools end to end through the loader: kvm.pool_* functions and the pool states."""

import os
import shutil

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import sandbox


@pytest.fixture
def new_pool(conn):
    """``(name, target)`` of a pool that does not exist yet; removed afterwards."""
    name = sandbox.uid("pool-")
    base = sandbox.files_dir(name)
    target = os.path.join(base, "images")
    try:
        yield name, target
    finally:
        sandbox.drop_pool(conn, name)
        shutil.rmtree(base, ignore_errors=True)


def test_pool_present_dir_creates_builds_starts(kvm_state, kvm, conn, new_pool, testmode):
    name, target = new_pool
    ret = kvm_state.pool_present(name, type="dir", target=target, autostart=True, test=testmode)
    changes = ret["changes"]
    assert changes["pool"] == {"old": None, "new": {"type": "dir", "target": target}}
    assert changes["build"] == {"old": None, "new": f"create directory {target}"}
    assert changes["running"] == {"old": False, "new": True}
    assert changes["autostart"] == {"old": False, "new": True}
    if testmode:
        assert ret["result"] is None
        assert not os.path.exists(target)
        assert name not in [p.name() for p in conn.listAllStoragePools(0)]
        return
    assert ret["result"] is True, ret["comment"]
    pool = conn.storagePoolLookupByName(name)
    assert pool.isActive() and pool.autostart()
    assert os.path.isdir(target)

    again = kvm_state.pool_present(name, type="dir", target=target, autostart=True)
    assert again["result"] is True and again["changes"] == {}, again

    shown = kvm.pool_show(name)
    assert shown["type"] == "dir" and shown["target"] == target
    assert shown["state"] == "running" and shown["autostart"] is True
    assert shown["volumes"] == 0 and shown["capacity"] > 0
    listed = kvm.pool_list()
    assert listed[name]["type"] == "dir" and listed[name]["active"] is True


def test_pool_present_existing_directory_is_used(kvm_state, conn, new_pool):
    name, target = new_pool
    os.makedirs(target)
    keep = os.path.join(target, "keep.img")
    with open(keep, "wb") as fh:
        fh.write(b"data")
    ret = kvm_state.pool_present(name, type="dir", target=target)
    assert ret["result"] is True, ret["comment"]
    assert "build" not in ret["changes"]
    with open(keep, "rb") as fh:
        assert fh.read() == b"data"


def test_pool_present_stopped_pool_is_started_and_autostart_changed(
    kvm_state, kvm, conn, new_pool, testmode
):
    name, target = new_pool
    assert kvm_state.pool_present(name, type="dir", target=target, autostart=True)["result"] is True
    kvm.pool_stop(name)
    ret = kvm_state.pool_present(name, type="dir", target=target, autostart=False, test=testmode)
    assert ret["changes"] == {
        "running": {"old": False, "new": True},
        "autostart": {"old": True, "new": False},
    }
    pool = conn.storagePoolLookupByName(name)
    assert bool(pool.isActive()) is (not testmode)
    assert bool(pool.autostart()) is testmode


def test_pool_present_target_drift_fixed_in_place_with_diff(kvm_state, conn, new_pool, testmode):
    name, target = new_pool
    assert kvm_state.pool_present(name, type="dir", target=target)["result"] is True
    uuid = conn.storagePoolLookupByName(name).UUIDString()
    other = target + "2"
    try:
        ret = kvm_state.pool_present(name, type="dir", target=other, test=testmode)
        assert ret["changes"]["target"] == {"old": target, "new": other}
        assert "-    <path>" + target in ret["comment"] and "+    <path>" + other in ret["comment"]
        pool = conn.storagePoolLookupByName(name)
        assert pool.UUIDString() == uuid
        from lxml import etree  # pylint: disable=import-outside-toplevel

        path = etree.fromstring(pool.XMLDesc(0)).findtext("target/path")
        assert path == (target if testmode else other)
        if not testmode:
            assert ret["result"] is True, ret["comment"]
            assert pool.isActive()
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_pool_present_type_change_refused(kvm_state, conn, new_pool):
    name, target = new_pool
    assert kvm_state.pool_present(name, type="dir", target=target)["result"] is True
    ret = kvm_state.pool_present(name, type="fs", target=target, source={"devices": ["/dev/loop7"]})
    assert ret["result"] is False
    assert "refused" in ret["comment"] and "force" in ret["comment"]
    assert conn.storagePoolLookupByName(name).isActive()


def test_pool_present_bad_args_name_the_key(kvm_state, new_pool):
    name, target = new_pool
    ret = kvm_state.pool_present(name, type="dirr", target=target)
    assert ret["result"] is False
    assert f"{name}:type" in ret["comment"] and "did you mean 'dir'" in ret["comment"]
    ret = kvm_state.pool_present(name, type="dir")
    assert ret["result"] is False and f"{name}:target: is required" in ret["comment"]


def test_pool_absent(kvm_state, conn, new_pool, testmode):
    name, target = new_pool
    assert kvm_state.pool_present(name, type="dir", target=target)["result"] is True
    ret = kvm_state.pool_absent(name, test=testmode)
    assert set(ret["changes"]) == {"removed"}
    names = [p.name() for p in conn.listAllStoragePools(0)]
    assert (name in names) is testmode
    assert os.path.isdir(target)  # storage stays without purge
    if not testmode:
        assert ret["result"] is True
        again = kvm_state.pool_absent(name)
        assert again["result"] is True and again["changes"] == {}


def test_pool_absent_purge_deletes_storage(kvm_state, conn, new_pool):
    name, target = new_pool
    assert kvm_state.pool_present(name, type="dir", target=target)["result"] is True
    sandbox.qemu_img("create", "-q", "-f", "qcow2", os.path.join(target, "a.qcow2"), "1M")
    ret = kvm_state.pool_absent(name, purge=True)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"]["purged"]["new"]
    assert not os.path.exists(target)


def test_exec_pool_functions(kvm, conn, new_pool):
    name, target = new_pool
    shown = kvm.pool_define(name, type="dir", target=target)
    assert shown["state"] == "inactive"
    with pytest.raises(CommandExecutionError):
        kvm.pool_define(name, type="dir", target=target)
    assert kvm.pool_build(name) is True and os.path.isdir(target)
    assert kvm.pool_start(name) is True
    assert kvm.pool_refresh(name) is True
    assert kvm.pool_autostart(name, enable=True) is True
    assert kvm.pool_show(name)["autostart"] is True
    assert kvm.pool_stop(name) is True
    assert kvm.pool_undefine(name) is True
    assert name not in kvm.pool_list()
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.pool_show(name)
    with pytest.raises(SaltInvocationError):
        kvm.pool_show("../etc")


def test_failed_start_restores_the_previous_definition(kvm_state, conn, new_pool):
    name, target = new_pool
    assert kvm_state.pool_present(name, type="dir", target=target, autostart=True)["result"] is True

    def definition():
        from lxml import etree  # pylint: disable=import-outside-toplevel

        root = etree.fromstring(conn.storagePoolLookupByName(name).XMLDesc(0))
        for tag in ("capacity", "allocation", "available"):  # the host's disk usage, not ours
            root.remove(root.find(tag))
        return etree.tostring(root)

    before = definition()
    missing = target + "-missing"
    ret = kvm_state.pool_present(name, type="dir", target=missing, build=False)
    assert ret["result"] is False
    assert "restored the previous definition, running" in ret["comment"], ret["comment"]
    pool = conn.storagePoolLookupByName(name)
    assert pool.isActive() and pool.autostart()
    assert definition() == before
    assert not os.path.exists(missing)


def test_failed_new_pool_is_removed_with_its_directory(kvm_state, conn, new_pool):
    name, target = new_pool
    # the parent is a file: libvirt cannot build the target directory, nothing may be left
    parent = os.path.dirname(target)
    blocker = os.path.join(parent, "file")
    with open(blocker, "w", encoding="utf-8") as fh:
        fh.write("x")
    ret = kvm_state.pool_present(name, type="dir", target=os.path.join(blocker, "images"))
    assert ret["result"] is False
    assert name not in [p.name() for p in conn.listAllStoragePools(0)]
