"""Network pool types for real, against userspace servers on 127.0.0.1.

* ``iscsi-direct``: libvirt's libiscsi initiator against ``tgtd`` exporting two
  file-backed LUNs; volumes are the LUNs (``unit:0:0:N``); libvirt cannot
  create or delete them, and says so.
* ``gluster``: libgfapi against ``glusterd`` with one single-brick volume;
  libvirt lists, refreshes and deletes files but cannot create them.
  ``netfs`` of format ``glusterfs`` mounts the same volume with FUSE.
* ``rbd``: a one-monitor, one-OSD Ceph with cephx; the key comes from pillar
  (rendered by the ``kvm.storage`` formula), goes into a private libvirt secret
  and never shows in returns or logs; RBD images are created, grown, deleted.

Each server is started once per module (``tests/support/storage_servers.py``,
``tests/support/ceph.py``) and stopped afterwards. A type whose libvirt
backend or server is missing here is skipped, naming what failed.
"""

import contextlib
import os
import shutil
import subprocess

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import sandbox
from tests.support.ceph import Ceph
from tests.support.storage_servers import Gluster, Tgt, Unavailable, backend_missing

M = 1024**2
INITIATOR = "iqn.2026-11.test.kvt:host1"
#: a well-formed Ceph key that is not the cluster's
WRONG_KEY = "AQBlbm90dGhla2V5bm90dGhla2V5bm90dGhlQQ=="


def _server(conn, ptype, factory):
    missing = backend_missing(conn, ptype)
    if missing:
        pytest.skip(missing)
    server = factory()
    try:
        server.start()
    except Unavailable as exc:
        server.stop()
        pytest.skip(f"{ptype} pool not tested for real: {exc}")
    except BaseException:
        server.stop()  # never leave a half-started server behind
        raise
    return server


@pytest.fixture(scope="module")
def tgt(conn):
    server = _server(conn, "iscsi-direct", Tgt)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gluster(conn):
    server = _server(conn, "gluster", Gluster)
    try:
        with server.mounted() as mnt:  # two images put there the way a user would
            sandbox.qemu_img("create", "-q", "-f", "qcow2", os.path.join(mnt, "disk1.qcow2"), "16M")
            with open(os.path.join(mnt, "raw.img"), "wb") as fh:
                fh.truncate(8 * M)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ceph(conn):
    server = _server(conn, "rbd", Ceph)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pool_name(conn):
    name = sandbox.uid("pool-")
    try:
        yield name
    finally:
        sandbox.drop_pool(conn, name)


def _about(size, want):
    """libvirt reports a LUN's size from its last block address: up to a few blocks short."""
    return want - 4096 <= size <= want


def _pools(conn):
    return [p.name() for p in conn.listAllStoragePools(0)]


def _no_change(kvm_state, name, **spec):
    """Re-applying (and test mode on the existing pool) changes nothing."""
    for test in (True, False):
        ret = kvm_state.pool_present(name, test=test, **spec)
        assert ret["result"] is True and ret["changes"] == {}, (test, ret["comment"])


def _absent(kvm_state, conn, name):
    predicted = kvm_state.pool_absent(name, test=True)
    assert predicted["result"] is None and predicted["changes"], predicted["comment"]
    assert name in _pools(conn)
    ret = kvm_state.pool_absent(name)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret["comment"]
    assert name not in _pools(conn)
    assert kvm_state.pool_absent(name)["changes"] == {}


# --- iscsi-direct ------------------------------------------------------------------------


def test_iscsi_direct_pool_against_tgtd(kvm_state, kvm, conn, tgt, pool_name, testmode):
    spec = {
        "type": "iscsi-direct",
        "source": {"hosts": [tgt.host], "devices": [tgt.iqn], "initiator": INITIATOR},
    }
    predicted = kvm_state.pool_present(pool_name, test=True, **spec)
    assert predicted["result"] is None, predicted["comment"]
    assert predicted["changes"] == {
        "pool": {"old": None, "new": spec},
        "running": {"old": False, "new": True},
    }
    assert pool_name not in _pools(conn)
    if testmode:
        return

    ret = kvm_state.pool_present(pool_name, **spec)
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    _no_change(kvm_state, pool_name, **spec)
    shown = kvm.pool_show(pool_name)
    assert shown["type"] == "iscsi-direct" and shown["state"] == "running"
    assert shown["source"] == spec["source"]
    assert _about(shown["capacity"], 96 * M) and shown["volumes"] == 3

    # the LUNs are the volumes, named by libvirt unit:0:0:<lun> (LUN 0 is tgtd's controller)
    vols = kvm.volume_list(pool_name)
    assert sorted(vols) == ["unit:0:0:0", "unit:0:0:1", "unit:0:0:2"]
    assert _about(vols["unit:0:0:1"]["capacity"], 64 * M) and _about(
        vols["unit:0:0:2"]["capacity"], 32 * M
    )
    lun1 = kvm.volume_show(pool_name, "unit:0:0:1")
    assert (
        lun1["path"]
        == f"ip-{tgt.host if ':' in tgt.host else tgt.host + ':3260'}-iscsi-{tgt.iqn}-lun-1"
    )
    assert lun1["used_by"] == [] and lun1["backing_chain"] == []

    # libvirt cannot create or delete LUNs: a clear error, the LUN data untouched
    digest = tgt.lun_digest(1)
    with pytest.raises(CommandExecutionError, match="does not support volume creation"):
        kvm.volume_create(pool_name, "unit:0:0:3", "8M")
    ret = kvm_state.volume_present("unit:0:0:3", pool=pool_name, size="8M")
    assert ret["result"] is False and "does not support volume creation" in ret["comment"], ret[
        "comment"
    ]
    with pytest.raises(CommandExecutionError, match="does not support vol deletion"):
        kvm.volume_delete(pool_name, "unit:0:0:1")
    ret = kvm_state.volume_absent("unit:0:0:1", pool=pool_name)
    assert ret["result"] is False and "does not support vol deletion" in ret["comment"], ret[
        "comment"
    ]
    assert tgt.lun_digest(1) == digest and "unit:0:0:1" in kvm.volume_list(pool_name)

    # a new initiator IQN is fixed in place (the pool is restarted), shown as an XML diff
    moved = dict(spec, source=dict(spec["source"], initiator=INITIATOR + "b"))
    predicted = kvm_state.pool_present(pool_name, test=True, **moved)
    assert predicted["result"] is None and set(predicted["changes"]) == {
        "source",
        "definition",
        "running",
    }
    assert predicted["changes"]["source"] == {
        "old": {"initiator": INITIATOR},
        "new": {"initiator": INITIATOR + "b"},
    }
    assert INITIATOR + "b" in predicted["comment"]
    ret = kvm_state.pool_present(pool_name, **moved)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret["comment"]
    assert kvm.pool_show(pool_name)["source"]["initiator"] == INITIATOR + "b"
    _no_change(kvm_state, pool_name, **moved)

    # another target is what holds the data: refused without force
    ret = kvm_state.pool_present(
        pool_name, **dict(spec, source=dict(spec["source"], devices=[tgt.iqn + "x"]))
    )
    assert ret["result"] is False and "changes what holds its data" in ret["comment"]

    _absent(kvm_state, conn, pool_name)
    # purge of an iscsi-direct pool stops and undefines it; the LUNs are never touched
    assert kvm_state.pool_present(pool_name, **spec)["result"] is True
    ret = kvm_state.pool_absent(pool_name, purge=True)
    assert ret["result"] is True, ret["comment"]
    assert pool_name not in _pools(conn) and tgt.lun_digest(1) == digest


# --- gluster ------------------------------------------------------------------------------


def test_gluster_pool_against_glusterd(kvm_state, kvm, conn, gluster, pool_name, testmode):
    spec = {
        "type": "gluster",
        "source": {"hosts": ["127.0.0.1"], "name": gluster.volume, "dir": "/"},
    }
    predicted = kvm_state.pool_present(pool_name, test=True, **spec)
    assert predicted["result"] is None, predicted["comment"]
    assert predicted["changes"] == {
        "pool": {"old": None, "new": spec},
        "running": {"old": False, "new": True},
    }
    assert pool_name not in _pools(conn)
    if testmode:
        return

    ret = kvm_state.pool_present(pool_name, **spec)  # libgfapi: ~10 s
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    _no_change(kvm_state, pool_name, **spec)
    shown = kvm.pool_show(pool_name)
    assert shown["type"] == "gluster" and shown["state"] == "running" and shown["capacity"] > 0
    assert shown["source"] == spec["source"]

    vols = kvm.volume_list(pool_name)
    assert sorted(vols) == ["disk1.qcow2", "raw.img"]
    assert vols["disk1.qcow2"]["path"] == f"gluster://127.0.0.1/{gluster.volume}/disk1.qcow2"
    assert vols["disk1.qcow2"]["format"] == "qcow2" and vols["disk1.qcow2"]["capacity"] == 16 * M
    assert vols["raw.img"]["capacity"] == 8 * M

    # libvirt cannot create a file in a gluster pool: a clear error, nothing made
    with pytest.raises(CommandExecutionError, match="does not support volume creation"):
        kvm.volume_create(pool_name, "new.qcow2", "8M")
    ret = kvm_state.volume_present("new.qcow2", pool=pool_name, size="8M", format="qcow2")
    assert ret["result"] is False and "does not support volume creation" in ret["comment"], ret[
        "comment"
    ]
    assert "new.qcow2" not in kvm.volume_list(pool_name)

    # a file put there by someone else shows after a refresh; volumes can be deleted
    with gluster.mounted() as mnt:
        with open(os.path.join(mnt, "later.img"), "wb") as fh:
            fh.truncate(4 * M)
    assert kvm.pool_refresh(pool_name) is True  # ~10 s
    assert "later.img" in kvm.volume_list(pool_name)
    predicted = kvm_state.volume_absent("later.img", pool=pool_name, test=True)
    assert predicted["result"] is None and predicted["changes"]
    ret = kvm_state.volume_absent("later.img", pool=pool_name)
    assert ret["result"] is True and ret["changes"] == predicted["changes"], ret["comment"]
    assert "later.img" not in kvm.volume_list(pool_name)
    assert not os.path.exists(os.path.join(gluster.dir, "brick", "later.img"))

    _absent(kvm_state, conn, pool_name)
    assert os.path.exists(os.path.join(gluster.dir, "brick", "disk1.qcow2"))  # the data stays


def test_netfs_glusterfs_pool_mounts_the_volume(kvm_state, kvm, conn, gluster, pool_name):
    target = os.path.join(sandbox.files_dir(pool_name), "mnt")
    spec = {
        "type": "netfs",
        "target": target,
        "source": {"hosts": ["127.0.0.1"], "dir": f"/{gluster.volume}", "format": "glusterfs"},
    }
    try:
        predicted = kvm_state.pool_present(pool_name, test=True, **spec)
        assert predicted["result"] is None and predicted["changes"]["build"] == {
            "old": None,
            "new": f"create directory {target}",
        }
        ret = kvm_state.pool_present(pool_name, **spec)
        assert ret["result"] is True and ret["changes"] == predicted["changes"], ret["comment"]
        assert os.path.ismount(target)
        _no_change(kvm_state, pool_name, **spec)
        assert {"disk1.qcow2", "raw.img"} <= set(kvm.volume_list(pool_name))
        # unlike a gluster pool, a mounted one creates and grows volumes
        name = sandbox.uid("v-") + ".qcow2"
        ret = kvm_state.volume_present(name, pool=pool_name, size="8M", format="qcow2")
        assert ret["result"] is True, ret["comment"]
        assert (
            kvm_state.volume_present(name, pool=pool_name, size="8M", format="qcow2")["changes"]
            == {}
        )
        assert os.path.exists(os.path.join(gluster.dir, "brick", name))
        assert kvm_state.volume_absent(name, pool=pool_name)["result"] is True
        _absent(kvm_state, conn, pool_name)
        assert not os.path.ismount(target)
    finally:
        sandbox.drop_pool(conn, pool_name)
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        slug = target.strip("/").replace("/", "-")
        with contextlib.suppress(OSError):
            os.unlink(f"/var/log/glusterfs/{slug}.log")
        shutil.rmtree(os.path.dirname(target), ignore_errors=True)


# --- rbd -----------------------------------------------------------------------------------


def _run_formula(kvm, kvm_state, tree, test):
    """The ``kvm.storage`` formula's states for ``tree`` (the ``kvm`` pillar), in order."""
    results = []
    for sid, body in kvm.render_formula("storage", tree).items():
        ((fun, args),) = body.items()
        kwargs = {}
        for item in args:
            kwargs.update(item)
        kwargs.pop("require", None)
        name = kwargs.pop("name")
        results.append((sid, getattr(kvm_state, fun.split(".", 1)[1])(name, test=test, **kwargs)))
    return results


def _secret(conn, pool):
    import libvirt  # pylint: disable=import-outside-toplevel

    try:
        return conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, f"salt-kvm/{pool}")
    except libvirt.libvirtError:
        return None


def test_rbd_pool_with_a_ceph_key_from_pillar(
    kvm_state, kvm, conn, ceph, pool_name, testmode, caplog
):
    from lxml import etree  # pylint: disable=import-outside-toplevel

    image = sandbox.uid("img-")
    source = {
        "hosts": ["127.0.0.1"],
        "name": ceph.pool,
        "auth": {"type": "ceph", "username": ceph.user, "secret": ceph.key},
    }
    tree = {
        "pools": {pool_name: {"type": "rbd", "source": source, "volumes": {image: {"size": "16M"}}}}
    }
    pool_sid, vol_sid = f"kvm-pool-{pool_name}", f"kvm-volume-{pool_name}-{image}"
    seen = []  # every return, checked for the key at the end

    def run(test):
        results = _run_formula(kvm, kvm_state, tree, test)
        seen.extend(repr(ret.raw) for _, ret in results)
        assert [sid for sid, _ in results] == [pool_sid, vol_sid]
        return {sid: ret for sid, ret in results}

    usage = f"salt-kvm/{pool_name}"
    with caplog.at_level("DEBUG"):
        predicted = run(test=True)
        assert predicted[pool_sid]["result"] is None, predicted[pool_sid]["comment"]
        assert predicted[pool_sid]["changes"] == {
            "pool": {
                "old": None,
                "new": {
                    "type": "rbd",
                    "source": dict(
                        source, auth={"type": "ceph", "username": ceph.user, "secret_usage": usage}
                    ),
                },
            },
            "secret": {"old": None, "new": "(hidden)"},
            "running": {"old": False, "new": True},
        }
        assert predicted[vol_sid]["result"] is None and predicted[vol_sid]["changes"] == {
            "volume": {"old": None, "new": {"size": "16 MiB"}}
        }
        assert predicted[vol_sid]["bytes"] == {"volume": {"new": {"size": 16 * M}}}
        assert (
            pool_name not in _pools(conn)
            and _secret(conn, pool_name) is None
            and image not in ceph.images()
        )
        if testmode:
            assert not [
                r
                for r in caplog.records
                if not r.name.startswith("saltfactories") and ceph.key in r.getMessage()
            ]
            return

        applied = run(test=False)
        assert all(ret["result"] is True for ret in applied.values()), {
            s: r["comment"] for s, r in applied.items()
        }
        assert {s: r["changes"] for s, r in applied.items()} == {
            s: r["changes"] for s, r in predicted.items()
        }
        assert image in ceph.images()
        secret = _secret(conn, pool_name)
        assert secret is not None and etree.fromstring(secret.XMLDesc(0)).get("private") == "yes"
        xml = conn.storagePoolLookupByName(pool_name).XMLDesc(0)
        assert usage in xml and ceph.key not in xml and ceph.key not in secret.XMLDesc(0)
        shown = kvm.pool_show(pool_name)
        assert shown["type"] == "rbd" and shown["state"] == "running" and shown["volumes"] == 1
        assert shown["source"]["auth"] == {
            "type": "ceph",
            "username": ceph.user,
            "secret_usage": usage,
        }
        vol = kvm.volume_show(pool_name, image)
        assert vol["path"] == f"{ceph.pool}/{image}" and vol["capacity"] == 16 * M
        seen.extend(repr(x) for x in (shown, vol, kvm.pool_list(), kvm.volume_list(pool_name)))

        # a second run, in test mode and for real, changes nothing
        for test in (True, False):
            again = run(test=test)
            assert all(r["result"] is True and r["changes"] == {} for r in again.values()), {
                s: r["comment"] for s, r in again.items()
            }

        # grow the image: test mode predicts what the real run does
        tree["pools"][pool_name]["volumes"][image]["size"] = "32M"
        predicted = run(test=True)
        applied = run(test=False)
        assert (
            predicted[vol_sid]["changes"]
            == applied[vol_sid]["changes"]
            == {"size": {"old": "16 MiB", "new": "32 MiB"}}
        )
        assert applied[vol_sid]["bytes"] == {"size": {"old": 16 * M, "new": 32 * M}}
        assert (
            ceph.rbd("info", "--format", "json", f"{ceph.pool}/{image}").stdout.count(str(32 * M))
            == 1
        )
        with pytest.raises(CommandExecutionError, match="shrinking"):
            kvm.volume_resize(pool_name, image, "16M")

        # volumes come and go through libvirt
        extra = sandbox.uid("img-")
        assert kvm.volume_create(pool_name, extra, "8M")["capacity"] == 8 * M
        assert extra in ceph.images()
        ret = kvm_state.volume_absent(extra, pool=pool_name)
        assert ret["result"] is True and ret["changes"], ret["comment"]
        assert extra not in ceph.images()

        # a new key in pillar: a running pool keeps the key it started with, so it is restarted
        # with the new one; a wrong key fails there and then, the right one brings the pool back
        wrong = dict(source, auth=dict(source["auth"], secret=WRONG_KEY))
        rotate = {
            "secret": {"old": "(hidden)", "new": "(hidden)"},
            "running": {
                "old": "running with the previous secret",
                "new": "restarted with the declared one",
            },
        }
        predicted = kvm_state.pool_present(pool_name, test=True, type="rbd", source=wrong)
        assert predicted["result"] is None and predicted["changes"] == rotate, predicted["comment"]
        ret = kvm_state.pool_present(pool_name, type="rbd", source=wrong)
        seen.extend(repr(r.raw) for r in (predicted, ret))
        assert ret["result"] is False, ret["comment"]
        assert "failed to connect to the RADOS monitor" in ret["comment"]
        assert kvm.pool_show(pool_name)["state"] == "inactive"  # the secret now holds the wrong key
        ret = kvm_state.pool_present(pool_name, type="rbd", source=source)
        seen.append(repr(ret.raw))
        assert ret["result"] is True and ret["changes"]["secret"]["new"] == "(hidden)", ret[
            "comment"
        ]
        assert kvm.pool_show(pool_name)["state"] == "running" and image in kvm.volume_list(
            pool_name
        )

        _absent(kvm_state, conn, pool_name)
        assert _secret(conn, pool_name) is None
        assert image in ceph.images()  # undefining a pool leaves its images
    for text in seen:
        assert ceph.key not in text and WRONG_KEY not in text
    leaked = [
        r
        for r in caplog.records
        if not r.name.startswith("saltfactories")
        and (ceph.key in r.getMessage() or WRONG_KEY in r.getMessage())
    ]
    # (the test harness itself logs the call's arguments; salt-kvm and Salt's state system must not)
    assert not leaked
