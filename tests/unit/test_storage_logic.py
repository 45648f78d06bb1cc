"""Pool and volume state logic without a libvirt daemon: diffs, guards, build plans, test mode."""

import os

import pytest

from salt_kvm import plan, storage, storage_volumes
from salt_kvm.errors import InvalidInput, KvmError, Refused
from salt_kvm.xml import storage as sxml

M = 1024**2


class FakeSession:
    """Memoised listings prefilled, no connection: what the resources read."""

    uri = "test:///fake"

    def __init__(self, cache):
        self.cache = cache

    def memo(self, key, loader):
        if key not in self.cache:
            self.cache[key] = loader()
        return self.cache[key]

    def invalidate(self, prefix=None):
        pass

    @property
    def conn(self):  # pragma: no cover - a test touching libvirt is a bug
        raise AssertionError("unit tests must not reach libvirt")


class _Definition:
    """A pool object that only knows its definition (what ``XMLDesc`` returns)."""

    def __init__(self, xml):
        self.xml = xml

    def XMLDesc(self, flags=0):  # noqa: N802  # pylint: disable=invalid-name,unused-argument
        return self.xml


def _pool_entry(ptype="dir", target="/srv/images", source=None, active=True, autostart=False):
    xml = sxml.Pool.build(
        "p", ptype, target, source, uuid="6c1e9f59-7c8a-4a41-9d1a-1f8f2c0e4d21"
    ).to_xml()
    return {
        "obj": _Definition(xml),
        "xml": xml,
        "active": active,
        "autostart": autostart,
        "persistent": True,
    }


def _vol_entry(name, capacity, fmt="qcow2", backing=None, path_dir="/srv/images"):
    vol = sxml.Volume.build(name, capacity, fmt=fmt, backing_path=backing)
    vol.path = os.path.join(path_dir, name)
    return {"obj": None, "xml": vol.to_xml()}


def _session(pool=None, vols=None):
    cache = {storage.POOLS_KEY: {"p": pool or _pool_entry()}}
    cache["storage:vols:p"] = vols or {}
    return FakeSession(cache)


# --- pools ---------------------------------------------------------------------------


def _pool_resource(session, **kwargs):
    return storage.PoolResource(session, "p", storage._spec("p", kwargs))  # pylint: disable=protected-access


def test_pool_no_changes_when_as_declared(tmp_path):
    target = str(tmp_path)
    session = _session(_pool_entry(target=target, autostart=True))
    res = _pool_resource(session, type="dir", target=target, autostart=True)
    assert res.plan(res.read()).changes == {}


def test_new_pool_changes_are_the_same_in_test_mode(tmp_path):
    target = str(tmp_path / "new")
    session = FakeSession({storage.POOLS_KEY: {}})
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
    session = _session(_pool_entry(target=str(tmp_path)))
    res = _pool_resource(
        session, type="fs", target=str(tmp_path), source={"devices": ["/dev/sdb"], "format": "ext4"}
    )
    with pytest.raises(Refused, match="changing its type to fs"):
        res.plan(res.read()).changes
    ret = plan.ensure("p", res, test=True)
    assert (
        ret["result"] is False and "refused" in ret["comment"] and "force: True" in ret["comment"]
    )


def test_source_device_change_refused_unless_forced():
    session = _session(_pool_entry("logical", "/dev/vg", {"name": "vg", "devices": ["/dev/sdb"]}))
    res = _pool_resource(session, type="logical", source={"name": "vg", "devices": ["/dev/sdc"]})
    with pytest.raises(Refused, match=r"source.devices is \['/dev/sdb'\], declared \['/dev/sdc'\]"):
        res.plan(res.read()).changes


def test_target_drift_is_a_diff_and_a_restart(tmp_path, monkeypatch):
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    os.makedirs(old)
    os.makedirs(new)
    session = _session(_pool_entry(target=old))
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
    session = _session(_pool_entry("iscsi", "/dev/disk/by-path", source))
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
    session = _session(_pool_entry(target=str(tmp_path), active=False, autostart=True))
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


# --- volumes --------------------------------------------------------------------------


def _vol_resource(session, name="v.qcow2", **kwargs):
    spec = {k: v for k, v in kwargs.items() if v is not None}
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    spec = schema.validate(schema.VOLUME, spec, name)
    return storage_volumes.VolumeResource(session, "p", name, spec)


def test_volume_new_and_no_op():
    session = _session(vols={"v.qcow2": _vol_entry("v.qcow2", 16 * M)})
    res = _vol_resource(session, size="16M", format="qcow2")
    assert res.plan(res.read()).changes == {}
    new = _vol_resource(session, name="w.qcow2", size="1G", backing="v.qcow2")
    assert new.plan(new.read()).changes == {
        "volume": {"old": None, "new": {"size": 1024**3, "backing": "v.qcow2"}}
    }


def test_volume_grow_shrink_format():
    session = _session(vols={"v.qcow2": _vol_entry("v.qcow2", 16 * M)})
    assert _vol_resource(session, size="32M").plan(_vol_resource(session).read()).changes == {
        "size": {"old": 16 * M, "new": 32 * M}
    }
    with pytest.raises(Refused, match="shrinking it to 8M loses data"):
        _vol_resource(session, size="8M").plan(_vol_resource(session).read()).changes
    forced = _vol_resource(session, size="8M", force=True)
    assert forced.plan(forced.read()).changes == {"size": {"old": 16 * M, "new": 8 * M}}
    with pytest.raises(Refused, match="never changed in place"):
        _vol_resource(session, size="16M", format="raw").plan(_vol_resource(session).read()).changes


def test_volume_rounding_on_lvm_is_not_a_shrink():
    pool = _pool_entry("logical", "/dev/vg", {"name": "vg"})
    session = _session(pool, vols={"lv": _vol_entry("lv", 12 * M, fmt=None, path_dir="/dev/vg")})
    res = _vol_resource(session, name="lv", size="10M")
    assert res.plan(res.read()).changes == {}


def test_volume_backing_change_refused():
    session = _session(
        vols={
            "v.qcow2": _vol_entry("v.qcow2", 16 * M, backing="/srv/images/a.qcow2"),
            "b.qcow2": _vol_entry("b.qcow2", 16 * M),
        }
    )
    res = _vol_resource(session, backing="b.qcow2")
    with pytest.raises(Refused, match="backing file of an existing volume is never changed"):
        res.plan(res.read()).changes


def test_volume_state_argument_errors():
    session = _session()
    for kwargs, msg in [
        ({"size": "20X"}, "v.qcow2:size: '20X' is not a size"),
        ({}, "v.qcow2:size: is required"),
        ({"sha256": "0" * 64, "size": "1M"}, "v.qcow2:sha256: needs source"),
        ({"source": "/a", "backing": "b"}, "cannot be combined with source"),
        ({"source": "ftp://x/y"}, "an absolute path or an http(s) URL"),
    ]:
        ret = storage_volumes.volume_present(session, "v.qcow2", pool="p", **kwargs)
        assert ret["result"] is False and msg in ret["comment"], (kwargs, ret["comment"])
    for bad in ("../x", "a/b", ".."):
        ret = storage_volumes.volume_present(session, bad, pool="p", size="1M")
        assert ret["result"] is False and "volume name" in ret["comment"]


def test_preallocation_mapping():
    prealloc = storage_volumes._prealloc  # pylint: disable=protected-access
    assert prealloc("qcow2", None, 10) == (0, 0)
    assert prealloc("qcow2", "metadata", 10) == (0, storage_volumes.PREALLOC_METADATA)
    assert prealloc("qcow2", "full", 10) == (10, storage_volumes.PREALLOC_METADATA)
    assert prealloc("raw", True, 10) == (10, 0)
    assert prealloc("raw", "off", 10) == (0, 0)


def test_a_clone_is_sparse_only_in_file_pools():
    # an LV cloned with an allocation below its capacity would be a sparse snapshot LV with one
    # extent of copy-on-write space (the copy overflowed it with EIO in make test-kernel)
    clone_allocation = storage_volumes._clone_allocation  # pylint: disable=protected-access
    assert [clone_allocation(t, 10) for t in ("dir", "fs", "netfs")] == [0, 0, 0]
    assert [clone_allocation(t, 10) for t in ("logical", "disk", "rbd")] == [10, 10, 10]


def test_digest_is_remembered(tmp_path):
    path = tmp_path / "img"
    path.write_bytes(b"abc")
    digest = storage_volumes.volume_digest(str(path))
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert storage_volumes.volume_digest(str(path), compute=False) in (
        digest,
        None,
    )  # None where xattrs are unsupported
    path.write_bytes(b"abcd")
    assert storage_volumes.volume_digest(str(path), compute=False) is None


# --- an image URL's password is never shown, and is sent as Basic auth ------------------------


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://user:pw@host/img", "http://user:***@host/img"),
        (
            "https://user:p%40ss@host:8443/a/b.qcow2?x=y@z#f",
            "https://user:***@host:8443/a/b.qcow2?x=y@z#f",
        ),
        (
            "http://u:p@w@host/img",
            "http://u:***@host/img",
        ),  # urllib takes the last '@' as the end of userinfo
        ("https://TOKEN@host/img", "https://***@host/img"),  # a bare userinfo is taken for a token
        ("HTTP://user:pw@host/img", "HTTP://user:***@host/img"),
        (
            "ftp://user:pw@host/img",
            "ftp://user:***@host/img",
        ),  # a redirect target is shown the same way
        ("http://host/img@2x.raw", "http://host/img@2x.raw"),
        ("/srv/images/a@b.raw", "/srv/images/a@b.raw"),
    ],
)
def test_redact(url, shown):
    assert storage_volumes.redact(url) == shown


def test_url_userinfo_becomes_basic_auth_and_leaves_the_url():
    import base64  # pylint: disable=import-outside-toplevel

    req = storage_volumes._request("http://us%3Aer:p%40ss:w@198.51.100.7:8080/i.raw")  # pylint: disable=protected-access
    assert req.full_url == "http://198.51.100.7:8080/i.raw" and req.host == "198.51.100.7:8080"
    assert (
        req.unredirected_hdrs["Authorization"]
        == "Basic " + base64.b64encode(b"us:er:p@ss:w").decode()
    )
    assert "Authorization" not in req.headers  # not copied to a redirect
    assert (
        "Authorization"
        not in storage_volumes._request("http://198.51.100.7/i.raw").unredirected_hdrs
    )  # pylint: disable=protected-access


def test_scrub_hides_the_password_in_any_encoding():
    src = "http://user:p%40ss@host/img"
    assert (
        storage_volumes._scrub("bad port 'p%40ss@host' / p@ss", src) == "bad port '***@host' / ***"
    )  # pylint: disable=protected-access


def test_redirects_to_other_schemes_are_refused():
    import urllib.request  # pylint: disable=import-outside-toplevel

    handler = storage_volumes._Redirects()  # pylint: disable=protected-access
    req = storage_volumes._request("http://u:pw@198.51.100.7/a")  # pylint: disable=protected-access
    for target in ("ftp://198.51.100.7/a", "file:///etc/passwd"):
        with pytest.raises(KvmError, match="only http and https"):
            handler.redirect_request(req, None, 302, "Found", {}, target)
    same = handler.redirect_request(req, None, 302, "Found", {}, "http://198.51.100.7/b")
    assert isinstance(same, urllib.request.Request) and same.get_header(
        "Authorization"
    ) == req.get_header("Authorization")
    for other in ("http://198.51.100.8/b", "https://198.51.100.7/b", "http://198.51.100.7:8080/b"):
        assert (
            handler.redirect_request(req, None, 302, "Found", {}, other).get_header("Authorization")
            is None
        )


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


# --- names can never escape the pool ------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(
    st.lists(st.sampled_from(list("ab./_-:@+\\ \0\n") + ["..", "%2e", "/.."]), max_size=12).map(
        "".join
    )
)
def test_an_accepted_volume_name_stays_inside_the_pool(name):
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    try:
        schema.validate(schema.VOLNAME, name, "name")
    except InvalidInput:
        return
    assert "/" not in name and ".." not in name and not name.startswith(".")
    pool = "/srv/pool"
    joined = os.path.normpath(os.path.join(pool, name))
    assert os.path.dirname(joined) == pool


@pytest.mark.parametrize(
    "bad",
    [
        "http://kvtuser:kvtPw1234@h/a b",
        "ftp://kvtuser:kvtPw1234@h/a",
        "http://kvtuser:kvtPw1234@h/" + "x" * 5000,
        12345,
    ],
)
def test_a_bad_source_url_error_hides_its_password(bad):
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    with pytest.raises(InvalidInput) as exc:
        schema.validate(schema.VOLUME, {"source": bad}, "n")
    assert "kvtPw1234" not in str(exc.value) and "n:source" in str(exc.value)


def test_a_download_without_content_length_is_spooled(tmp_path, monkeypatch):
    """No Content-Length: the image is spooled (its size must be known first); a spool that
    cannot be written is a clear error naming the URL without its password."""
    import http.server  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)  # HTTP/1.0: the end of the body is the end of the connection
            self.end_headers()
            self.wfile.write(b"x" * 300_000)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://u:kvtSpoolPw@127.0.0.1:{server.server_address[1]}/i.raw"
    try:
        monkeypatch.setattr(storage_volumes, "SPOOL_DIR", str(tmp_path))
        src, length, shown = storage_volumes._open_source(url)  # pylint: disable=protected-access
        with src:
            assert (
                length == 300_000
                and len(src.read()) == 300_000
                and shown == url.replace("kvtSpoolPw", "***")
            )
        monkeypatch.setattr(storage_volumes, "SPOOL_DIR", str(tmp_path / "missing"))
        with pytest.raises(KvmError, match="cannot spool") as exc:
            storage_volumes._open_source(url)  # pylint: disable=protected-access
        assert "kvtSpoolPw" not in str(exc.value) and "u:***@" in str(exc.value)
    finally:
        server.shutdown()
        server.server_close()
