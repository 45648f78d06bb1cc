"""Volume state logic without a libvirt daemon: diffs, guards, argument errors, an image
URL's password, names that stay inside the pool, spooled downloads."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salt_kvm import storage_volumes
from salt_kvm.errors import InvalidInput, KvmError, Refused
from tests.support import fakes, http_servers

M = 1024**2


def _session(pool=None, vols=None):
    return fakes.storage_session({"p": pool or fakes.pool_entry()}, {"p": vols or {}})


# --- volumes --------------------------------------------------------------------------


def _vol_resource(session, name="v.qcow2", **kwargs):
    spec = {k: v for k, v in kwargs.items() if v is not None}
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    spec = schema.validate(schema.VOLUME, spec, name)
    return storage_volumes.VolumeResource(session, "p", name, spec)


def test_volume_new_and_no_op():
    session = _session(vols={"v.qcow2": fakes.volume_entry("v.qcow2", 16 * M)})
    res = _vol_resource(session, size="16M", format="qcow2")
    assert res.plan(res.read()).changes == {}
    new = _vol_resource(session, name="w.qcow2", size="1G", backing="v.qcow2")
    assert new.plan(new.read()).changes == {
        "volume": {"old": None, "new": {"size": 1024**3, "backing": "v.qcow2"}}
    }


def test_volume_grow_shrink_format():
    session = _session(vols={"v.qcow2": fakes.volume_entry("v.qcow2", 16 * M)})
    assert _vol_resource(session, size="32M").plan(_vol_resource(session).read()).changes == {
        "size": {"old": 16 * M, "new": 32 * M}
    }
    with pytest.raises(Refused, match="shrinking it to 8M loses data"):
        _vol_resource(session, size="8M").plan(_vol_resource(session).read())
    forced = _vol_resource(session, size="8M", force=True)
    assert forced.plan(forced.read()).changes == {"size": {"old": 16 * M, "new": 8 * M}}
    with pytest.raises(Refused, match="never changed in place"):
        _vol_resource(session, size="16M", format="raw").plan(_vol_resource(session).read())


def test_volume_rounding_on_lvm_is_not_a_shrink():
    pool = fakes.pool_entry("logical", "/dev/vg", {"name": "vg"})
    session = _session(
        pool, vols={"lv": fakes.volume_entry("lv", 12 * M, fmt=None, path_dir="/dev/vg")}
    )
    res = _vol_resource(session, name="lv", size="10M")
    assert res.plan(res.read()).changes == {}


def test_volume_backing_change_refused():
    session = _session(
        vols={
            "v.qcow2": fakes.volume_entry("v.qcow2", 16 * M, backing="/srv/images/a.qcow2"),
            "b.qcow2": fakes.volume_entry("b.qcow2", 16 * M),
        }
    )
    res = _vol_resource(session, backing="b.qcow2")
    with pytest.raises(Refused, match="backing file of an existing volume is never changed"):
        res.plan(res.read())


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


# --- names can never escape the pool ------------------------------------------------------


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

    class Handler(http_servers.QuietHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)  # HTTP/1.0: the end of the body is the end of the connection
            self.end_headers()
            self.wfile.write(b"x" * 300_000)

    with http_servers.serve(Handler) as server:
        url = f"http://u:kvtSpoolPw@127.0.0.1:{server.server_address[1]}/i.raw"
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
