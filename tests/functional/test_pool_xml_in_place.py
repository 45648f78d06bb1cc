"""Pool XML is edited in place: elements salt-kvm does not model survive every change it makes.

A ``kvt-`` dir pool is defined by hand (through libvirt, not salt-kvm) with a target
``<permissions>`` block (mode, owner, group), which the pillar does not model. Then
every change salt-kvm makes to a pool is run through the loader -- the state's first
start, autostart on and off, a start after a stop, refresh, build, volumes made, grown
and deleted in it, a change of target (predicted, then applied, the new directory built)
and a failed change that is rolled back -- and after each one the persistent definition
still holds the block as it was defined. A second pool carries an element outside
``<target>`` (``<features><cow state='no'/>``; libvirt refuses to *build* such a pool
off btrfs, so that one only goes through the changes that build nothing).
"""

import os

import pytest
from lxml import etree

from tests.support import sandbox

INACTIVE = 1  # VIR_STORAGE_XML_INACTIVE: the persistent definition


def _unmodelled(conn, name):
    """What the test defined and salt-kvm does not model, as read from the persistent definition."""
    root = etree.fromstring(conn.storagePoolLookupByName(name).XMLDesc(INACTIVE))
    perms = root.find("target/permissions")
    cow_el = root.find("features/cow")
    return {
        "permissions": None
        if perms is None
        else {child.tag: (child.text or "").strip() for child in perms},
        "cow": None if cow_el is None else cow_el.get("state"),
    }


PERMISSIONS = {"mode": "0750", "owner": "0", "group": "0"}
EXPECTED = {"permissions": PERMISSIONS, "cow": None}


def _define_by_hand(conn, name, target, cow=False):
    pool = etree.Element("pool", type="dir")
    etree.SubElement(pool, "name").text = name
    if cow:
        etree.SubElement(etree.SubElement(pool, "features"), "cow", state="no")
    target_el = etree.SubElement(pool, "target")
    etree.SubElement(target_el, "path").text = target
    perms = etree.SubElement(target_el, "permissions")
    for tag, text in PERMISSIONS.items():
        etree.SubElement(perms, tag).text = text
    conn.storagePoolDefineXML(etree.tostring(pool, encoding="unicode"), 0)


@pytest.fixture
def hand_pool(conn, names):
    """``(name, base directory, target)`` of a dir pool defined by hand, not started."""
    name = names("p-")
    base = sandbox.files_dir(names("a-"))
    target = os.path.join(base, "images")
    os.makedirs(target)
    os.chmod(target, 0o750)
    _define_by_hand(conn, name, target)
    assert _unmodelled(conn, name) == EXPECTED
    try:
        yield name, base, target
    finally:
        sandbox.drop_pool(conn, name)


def test_every_pool_change_keeps_what_salt_kvm_does_not_model(kvm_state, kvm, conn, hand_pool):
    name, base, target = hand_pool

    def kept(step, ret=None):
        if ret is not None:
            assert ret["result"] is not False, (step, ret["comment"])
        assert _unmodelled(conn, name) == EXPECTED, step

    def present(**kwargs):
        return kvm_state.pool_present(name, type="dir", **dict({"target": target}, **kwargs))

    ret = present()
    assert ret["changes"] == {"running": {"old": False, "new": True}}, ret
    kept("first start", ret)
    assert present()["changes"] == {}
    kept("no-op", present(autostart=True))
    assert conn.storagePoolLookupByName(name).autostart()
    kept("autostart off", present(autostart=False))

    kvm.pool_stop(name)
    kept("stop")
    ret = present()
    assert ret["changes"] == {"running": {"old": False, "new": True}}, ret
    kept("start after a stop", ret)
    kvm.pool_stop(name)
    kvm.pool_start(name)
    kept("kvm.pool_start")
    kvm.pool_autostart(name, enable=True)
    kept("kvm.pool_autostart")
    kvm.pool_refresh(name)
    kept("refresh")
    kvm.pool_stop(name)  # libvirt builds a pool that is not running
    kvm.pool_build(name)
    kept("build")
    kvm.pool_start(name, build=True)
    kept("kvm.pool_start build=True")

    # volumes made, grown and deleted in it
    ret = kvm_state.volume_present("v.qcow2", pool=name, size="8M")
    kept("volume_present", ret)
    kept("volume grown", kvm_state.volume_present("v.qcow2", pool=name, size="16M"))
    kvm.volume_create(name, "w.raw", size="4M", format="raw")
    kept("volume_create")
    kvm.volume_resize(name, "w.raw", "8M")
    kept("volume_resize")
    kvm.volume_delete(name, "w.raw")
    kept("volume_delete")
    kept("volume_absent", kvm_state.volume_absent("v.qcow2", pool=name))

    # a declared change of target: predicted (nothing changes), then applied in place
    uuid = conn.storagePoolLookupByName(name).UUIDString()
    moved = os.path.join(base, "moved")
    ret = present(target=moved, test=True)
    assert ret["result"] is None and ret["changes"]["target"] == {"old": target, "new": moved}
    assert "<mode>0750</mode>" in ret["comment"], ret
    kept("target change, test=True", ret)
    ret = present(target=moved)
    kept("target change", ret)
    pool = conn.storagePoolLookupByName(name)
    assert pool.UUIDString() == uuid and pool.isActive()
    assert etree.fromstring(pool.XMLDesc(INACTIVE)).findtext("target/path") == moved
    assert oct(os.stat(moved).st_mode & 0o777) == oct(0o750)  # libvirt made it with them
    assert present(target=moved)["changes"] == {}

    # a change that fails is rolled back to the definition as it was, unknown parts too
    ret = present(target=os.path.join(base, "missing"), build=False)
    assert ret["result"] is False and "restored the previous definition" in ret["comment"], ret
    kept("failed change, restored")
    assert etree.fromstring(pool.XMLDesc(INACTIVE)).findtext("target/path") == moved
    kept("back to the first target", present())


def test_an_element_outside_the_target_survives_too(kvm_state, kvm, conn, names):
    name = names("p-")
    base = sandbox.files_dir(names("a-"))
    target, moved = os.path.join(base, "images"), os.path.join(base, "moved")
    for path in (target, moved):  # moved exists: the change of target builds nothing
        os.makedirs(path)
        os.chmod(path, 0o750)  # libvirt reads a running dir pool's permissions back
    expected = dict(EXPECTED, cow="no")
    _define_by_hand(conn, name, target, cow=True)
    try:
        steps = [
            ("first start", lambda: kvm_state.pool_present(name, type="dir", target=target)),
            (
                "autostart",
                lambda: kvm_state.pool_present(name, type="dir", target=target, autostart=True),
            ),
            ("refresh", lambda: kvm.pool_refresh(name)),
            (
                "volume_present",
                lambda: kvm_state.volume_present("v.qcow2", pool=name, size="8M"),
            ),
            ("volume_delete", lambda: kvm.volume_delete(name, "v.qcow2")),
            ("stop", lambda: kvm.pool_stop(name)),
            (
                "target change, started again",
                lambda: kvm_state.pool_present(name, type="dir", target=moved),
            ),
        ]
        for step, run in steps:
            ret = run()
            if isinstance(ret, dict):
                assert ret["result"] is True, (step, ret["comment"])
            assert _unmodelled(conn, name) == expected, step
        pool = conn.storagePoolLookupByName(name)
        assert pool.isActive()
        assert etree.fromstring(pool.XMLDesc(INACTIVE)).findtext("target/path") == moved
    finally:
        sandbox.drop_pool(conn, name)
