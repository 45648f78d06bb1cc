"""Pool state logic without a libvirt daemon: diffs, guards, build plans, test mode, the
secret's digest."""

import os

import pytest

from salt_kvm import plan, storage
from salt_kvm.errors import InvalidInput, KvmError, Refused
from tests.support import fakes


def _session(pool=None):
    return fakes.storage_session({"p": pool or fakes.pool_entry()}, {"p": {}})


# --- pools ---------------------------------------------------------------------------


def _pool_resource(session, **kwargs):
    return storage.PoolResource(session, "p", storage._spec("p", kwargs))  # pylint: disable=protected-access


def test_pool_no_changes_when_as_declared(tmp_path):
    target = str(tmp_path)
    session = _session(fakes.pool_entry(target=target, autostart=True))
    res = _pool_resource(session, type="dir", target=target, autostart=True)
    assert res.plan(res.read()).changes == {}


def test_new_pool_changes_are_the_same_in_test_mode(tmp_path):
    target = str(tmp_path / "new")
    session = fakes.storage_session({})
    res = _pool_resource(session, type="dir", target=target, autostart=True)
    ret = plan.ensure("p", res, test=True)
    assert ret["result"] is None
    assert ret["changes"] == {
        "pool": {"old": None, "new": {"type": "dir", "target": target}},
        "build": {"old": None, "new": f"create directory {target}"},
        "running": {"old": False, "new": True},
        "autostart": {"old": False, "new": True},
    }
    assert not os.path.exists(target)


def test_type_change_refused_unless_forced(tmp_path):
    session = _session(fakes.pool_entry(target=str(tmp_path)))
    res = _pool_resource(
        session, type="fs", target=str(tmp_path), source={"devices": ["/dev/sdb"], "format": "ext4"}
    )
    with pytest.raises(Refused, match="changing its type to fs"):
        res.plan(res.read())
    ret = plan.ensure("p", res, test=True)
    assert (
        ret["result"] is False and "refused" in ret["comment"] and "force: True" in ret["comment"]
    )


def test_source_device_change_refused_unless_forced():
    session = _session(
        fakes.pool_entry("logical", "/dev/vg", {"name": "vg", "devices": ["/dev/sdb"]})
    )
    res = _pool_resource(session, type="logical", source={"name": "vg", "devices": ["/dev/sdc"]})
    with pytest.raises(Refused, match=r"source.devices is \['/dev/sdb'\], declared \['/dev/sdc'\]"):
        res.plan(res.read())


def test_target_drift_is_a_diff_and_a_restart(tmp_path, monkeypatch):
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    os.makedirs(old)
    os.makedirs(new)
    session = _session(fakes.pool_entry(target=old))
    res = _pool_resource(session, type="dir", target=new)
    planned = res.plan(res.read())
    changes = planned.changes
    assert changes["target"] == {"old": old, "new": new}
    assert changes["running"] == {
        "old": "running the old definition",
        "new": "restarted with the declared one",
    }
    comment = res.summary(planned, True)
    assert f"-    <path>{old}</path>" in comment and f"+    <path>{new}</path>" in comment


def test_auth_drift_is_not_a_data_change():
    source = {
        "hosts": ["198.51.100.8"],
        "devices": ["iqn.2026-01.x:t"],
        "auth": {"type": "chap", "username": "a", "secret_usage": "u"},
    }
    session = _session(fakes.pool_entry("iscsi", "/dev/disk/by-path", source))
    res = _pool_resource(
        session,
        type="iscsi",
        target="/dev/disk/by-path",
        source=dict(source, auth={"type": "chap", "username": "b", "secret_usage": "u"}),
    )
    changes = res.plan(res.read()).changes
    assert changes["source"] == {
        "old": {"auth": source["auth"]},
        "new": {"auth": {"type": "chap", "username": "b", "secret_usage": "u"}},
    }


def test_stopped_pool_started_and_autostart(tmp_path):
    session = _session(fakes.pool_entry(target=str(tmp_path), active=False, autostart=True))
    res = _pool_resource(session, type="dir", target=str(tmp_path), autostart=False)
    assert res.plan(res.read()).changes == {
        "running": {"old": False, "new": True},
        "autostart": {"old": True, "new": False},
    }


@pytest.mark.parametrize(
    "kwargs, path",
    [
        ({"type": "dir"}, "p:target"),
        ({"type": "fs", "target": "/x"}, "p:source:devices"),
        ({"type": "dir", "target": "relative"}, "p:target"),
        ({"type": "dir", "target": "/a/../b"}, "p:target"),
        (
            {
                "type": "netfs",
                "target": "/x",
                "source": {"hosts": ["h"], "dir": "rel", "format": "nfs"},
            },
            "p:source:dir",
        ),
        ({"type": "dir", "target": "/x", "build": "yes"}, "p:build"),
        ({"type": "dir", "target": "/x", "autostrat": True}, "p:autostrat"),
    ],
)
def test_pool_args_are_validated_with_the_pillar_schema(kwargs, path):
    with pytest.raises(InvalidInput) as err:
        storage._spec("p", kwargs)  # pylint: disable=protected-access
    assert err.value.path == path


def test_build_plan_dir(tmp_path):
    assert storage.build_plan({"type": "dir", "target": str(tmp_path)}) is None
    missing = str(tmp_path / "x")
    assert storage.build_plan({"type": "dir", "target": missing}) == (
        f"create directory {missing}",
        0,
    )
    assert storage.build_plan({"type": "dir", "target": missing, "build": False}) is None


def test_build_plan_never_overwrites(monkeypatch, tmp_path):
    monkeypatch.setattr(storage, "_probe", lambda dev, what: {"TYPE": "xfs", "PTTYPE": "gpt"}[what])
    fs = {
        "type": "fs",
        "target": str(tmp_path),
        "source": {"devices": ["/dev/sdb"], "format": "ext4"},
    }
    with pytest.raises(Refused, match="holds a xfs filesystem, declared ext4; set build: force"):
        storage.build_plan(fs)
    assert storage.build_plan(dict(fs, build="force"))[1] == storage.BUILD_FLAGS["overwrite"]
    assert storage.build_plan(dict(fs, source={"devices": ["/dev/sdb"], "format": "xfs"})) is None
    disk = {"type": "disk", "target": "/dev", "source": {"devices": ["/dev/sdb"], "format": "dos"}}
    with pytest.raises(Refused, match="holds a gpt partition table"):
        storage.build_plan(disk)
    assert storage.build_plan(dict(disk, source={"devices": ["/dev/sdb"]})) is None
    monkeypatch.setattr(storage, "_vg_exists", lambda name: False)
    lvm = {"type": "logical", "source": {"name": "vg", "devices": ["/dev/sdb"]}}
    with pytest.raises(Refused, match="holds xfs data"):
        storage.build_plan(lvm)
    monkeypatch.setattr(storage, "_probe", lambda dev, what: None)
    assert storage.build_plan(lvm) == (
        "create volume group vg on /dev/sdb",
        storage.BUILD_FLAGS["no_overwrite"],
    )
    with pytest.raises(KvmError, match="declare source.format"):
        storage.build_plan(
            {"type": "fs", "target": str(tmp_path), "source": {"devices": ["/dev/sdb"]}}
        )
    monkeypatch.setattr(storage, "_vg_exists", lambda name: True)
    assert storage.build_plan(lvm) is None


def test_public_source_hides_secret():
    shown = storage._public_source({"auth": {"type": "ceph", "username": "u", "secret": "k"}})  # pylint: disable=protected-access
    assert shown == {"auth": {"type": "ceph", "username": "u"}}


def test_secret_digest_is_a_keyed_hmac(tmp_path, monkeypatch):
    """The secret's description holds an HMAC keyed by a host-local 0600 key, not a plain hash."""
    import hashlib  # pylint: disable=import-outside-toplevel
    import stat  # pylint: disable=import-outside-toplevel

    key_file = tmp_path / "d" / "secret-hmac.key"
    monkeypatch.setattr(storage, "SECRET_KEY_FILE", str(key_file))
    assert storage._hmac_key() is None and not key_file.exists()  # pylint: disable=protected-access
    key = storage._hmac_key(create=True)  # pylint: disable=protected-access
    assert len(key) == 32 and storage._hmac_key() == key  # pylint: disable=protected-access
    assert (
        stat.S_IMODE(key_file.stat().st_mode) == 0o600
        and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    )
    digest = storage._digest("u-u-i-d", "weak", key)  # pylint: disable=protected-access
    assert digest != hashlib.sha256(b"u-u-i-d:weak").hexdigest() and digest != storage._digest(
        "u-u-i-d", "weak", b"k" * 32
    )  # pylint: disable=protected-access
    key_file.write_bytes(b"short")  # a broken key is replaced
    assert len(storage._hmac_key(create=True)) == 32  # pylint: disable=protected-access
