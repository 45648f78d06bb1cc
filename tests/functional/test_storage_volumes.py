"""Volume lifecycle on a real dir pool: create, import, clone, resize (also online), wipe, delete,
and every refusal leaving the data untouched."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support import http_servers, sandbox

M = 1024**2


@pytest.fixture(scope="module")
def pool(conn):
    """A running dir pool shared by the module: ``(name, path)``."""
    obj, path = sandbox.make_dir_pool(conn)
    name = obj.name()
    try:
        yield name, path
    finally:
        import libvirt  # pylint: disable=import-outside-toplevel

        with contextlib.suppress(libvirt.libvirtError):
            obj = conn.storagePoolLookupByName(name)
            if obj.isActive():
                obj.destroy()
            obj.undefine()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vname():
    """A fresh volume name (files of the module's pool go when the pool goes)."""
    return sandbox.uid("v-") + ".qcow2"


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _info(path):
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", "--backing-chain", path],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def image(pool):
    """A small qcow2 image with data, outside the pool: ``(path, sha256)``."""
    directory = sandbox.files_dir(sandbox.uid("img-"))
    path = os.path.join(directory, "src.qcow2")
    raw = os.path.join(directory, "src.raw")
    with open(raw, "wb") as fh:
        fh.write(os.urandom(256 * 1024))
    sandbox.qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, path)
    try:
        yield path, _sha(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def http_root(image):
    """An HTTP server on 127.0.0.1 serving the image's directory: its base URL."""
    with http_servers.FileServer(os.path.dirname(image[0])) as server:
        yield server.url


def test_volume_present_create_grow_and_refusals(kvm_state, kvm, pool, vname, testmode):
    pname, path = pool
    ret = kvm_state.volume_present(vname, pool=pname, size="16M", format="qcow2", test=testmode)
    assert ret["changes"] == {"volume": {"old": None, "new": {"size": "16 MiB", "format": "qcow2"}}}
    assert ret["bytes"] == {"volume": {"new": {"size": 16 * M}}}, (
        "sizes for people in changes, bytes kept"
    )
    if testmode:
        assert ret["result"] is None and vname not in kvm.volume_list(pname)
        kvm.volume_create(pname, vname, "16M")
    else:
        assert ret["result"] is True, ret["comment"]
    again = kvm_state.volume_present(vname, pool=pname, size="16M", format="qcow2")
    assert again["result"] is True and again["changes"] == {}
    shown = kvm.volume_show(pname, vname)
    assert shown["format"] == "qcow2" and shown["capacity"] == 16 * M
    assert (
        shown["path"] == os.path.join(path, vname)
        and shown["used_by"] == []
        and shown["backing_chain"][0]["format"] == "qcow2"
    )

    ret = kvm_state.volume_present(vname, pool=pname, size="32M", test=testmode)
    assert ret["changes"] == {"size": {"old": "16 MiB", "new": "32 MiB"}}
    assert _info(shown["path"])[0]["virtual-size"] == (16 if testmode else 32) * M

    before = _sha(shown["path"])
    ret = kvm_state.volume_present(vname, pool=pname, size="8M", test=testmode)
    assert ret["result"] is False and "shrinking" in ret["comment"] and "force" in ret["comment"]
    ret = kvm_state.volume_present(vname, pool=pname, size="32M", format="raw", test=testmode)
    assert ret["result"] is False and "never changed in place" in ret["comment"]
    assert _sha(shown["path"]) == before


def test_backing_chain_and_backing_delete_refused(kvm_state, kvm, pool, testmode):
    pname, path = pool
    base, top = sandbox.uid("base-") + ".qcow2", sandbox.uid("top-") + ".qcow2"
    assert kvm_state.volume_present(base, pool=pname, size="16M")["result"] is True
    ret = kvm_state.volume_present(top, pool=pname, backing=base, test=testmode)
    assert ret["changes"] == {"volume": {"old": None, "new": {"backing": base}}}
    if testmode:
        return
    assert ret["result"] is True, ret["comment"]
    chain = _info(os.path.join(path, top))
    assert [c["filename"] for c in chain] == [os.path.join(path, top), os.path.join(path, base)]
    assert chain[0]["virtual-size"] == 16 * M and chain[0]["backing-filename-format"] == "qcow2"
    shown = kvm.volume_show(pname, top)
    assert [c["path"] for c in shown["backing_chain"]] == [
        os.path.join(path, top),
        os.path.join(path, base),
    ]
    assert kvm.volume_show(pname, base)["backing_of"] == [f"{pname}/{top}"]

    before = _sha(os.path.join(path, base))
    ret = kvm_state.volume_absent(base, pool=pname)
    assert ret["result"] is False and "backing file of" in ret["comment"]
    with pytest.raises(CommandExecutionError, match="backing file of"):
        kvm.volume_delete(pname, base)
    with pytest.raises(CommandExecutionError, match="backing file of"):
        kvm.volume_wipe(pname, base)
    assert _sha(os.path.join(path, base)) == before
    assert kvm_state.volume_absent(top, pool=pname)["result"] is True
    assert kvm_state.volume_absent(base, pool=pname)["result"] is True
    assert not os.path.exists(os.path.join(path, base))


def test_import_local_file_sha256_and_idempotence(kvm_state, kvm, pool, image, testmode):
    pname, path = pool
    src, digest = image
    name = sandbox.uid("imp-") + ".qcow2"
    ret = kvm_state.volume_present(name, pool=pname, source=src, sha256=digest, test=testmode)
    assert ret["changes"] == {"volume": {"old": None, "new": {"source": src, "sha256": digest}}}
    if testmode:
        return
    assert ret["result"] is True, ret["comment"]
    dst = os.path.join(path, name)
    assert _sha(dst) == digest
    assert kvm.volume_show(pname, name)["format"] == "qcow2"
    again = kvm_state.volume_present(name, pool=pname, source=src, sha256=digest)
    assert again["result"] is True and again["changes"] == {}, again["comment"]
    other = "0" * 64
    ret = kvm_state.volume_present(name, pool=pname, source=src, sha256=other)
    assert ret["result"] is False and "re-importing would overwrite" in ret["comment"]
    assert _sha(dst) == digest


def test_import_wrong_sha256_is_rejected_and_leaves_nothing(kvm_state, kvm, pool, image, http_root):
    pname, path = pool
    src, digest = image
    for source in (src, f"{http_root}/src.qcow2"):
        name = sandbox.uid("bad-") + ".qcow2"
        ret = kvm_state.volume_present(name, pool=pname, source=source, sha256="f" * 64)
        assert ret["result"] is False and f"sha256 is {digest}" in ret["comment"]
        assert name not in kvm.volume_list(pname)
        assert not os.path.exists(os.path.join(path, name))


def test_import_from_http(kvm, pool, image, http_root):
    pname, path = pool
    src, digest = image
    name = sandbox.uid("web-") + ".qcow2"
    shown = kvm.volume_import(pname, name, f"{http_root}/src.qcow2", sha256=digest)
    assert shown["format"] == "qcow2" and _sha(shown["path"]) == digest
    with pytest.raises(CommandExecutionError, match="already exists"):
        kvm.volume_import(pname, name, f"{http_root}/src.qcow2")
    with pytest.raises(CommandExecutionError, match="cannot download"):
        kvm.volume_import(pname, sandbox.uid("nf-"), f"{http_root}/missing.qcow2")


def test_clone_converts_format(kvm, pool, image):
    pname, path = pool
    src, _ = image
    name = sandbox.uid("c-") + ".qcow2"
    kvm.volume_import(pname, name, src)
    clone = kvm.volume_clone(pname, name, name.replace(".qcow2", ".raw"), format="raw")
    assert clone["format"] == "raw"
    assert _info(clone["path"])[0]["format"] == "raw"
    raw_orig = subprocess.run(
        ["qemu-img", "compare", "-U", os.path.join(path, name), clone["path"]],
        capture_output=True,
        text=True,
    )
    assert raw_orig.returncode == 0, raw_orig.stdout + raw_orig.stderr


@pytest.fixture
def vm_on(conn):
    """Factory: a running tiny VM on an existing disk (the ``tiny_vm`` fixture would remove
    the disk's directory, here the pool's); the VM is removed, the disk stays."""
    made = []

    def make(disk):
        dom, _ = sandbox.make_vm(conn, start=True, disk=disk)
        made.append(dom.name())
        return dom

    try:
        yield make
    finally:
        for name in made:
            sandbox.remove_vm(conn, name)


def test_online_grow_of_a_running_vm_disk(kvm, kvm_state, pool, vm_on, vname):
    pname, path = pool
    kvm.volume_create(pname, vname, "32M")
    disk = os.path.join(path, vname)
    dom = vm_on(disk)
    assert dom.blockInfo("vda")[0] == 32 * M
    assert kvm.volume_show(pname, vname)["used_by"] == [dom.name()]
    ret = kvm_state.volume_present(vname, pool=pname, size="48M")
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == {"size": {"old": "32 MiB", "new": "48 MiB"}} and ret["bytes"] == {
        "size": {"old": 32 * M, "new": 48 * M}
    }
    assert dom.blockInfo("vda")[0] == 48 * M  # the running guest sees it
    kvm.volume_resize(pname, vname, "64M")
    assert dom.blockInfo("vda")[0] == 64 * M
    with pytest.raises(CommandExecutionError, match="shrinking"):
        kvm.volume_resize(pname, vname, "16M")

    # in-use: delete, wipe, purge of the pool are refused and the data stays
    before = _sha(disk)
    ret = kvm_state.volume_absent(vname, pool=pname)
    assert ret["result"] is False and dom.name() in ret["comment"]
    with pytest.raises(CommandExecutionError, match="used by VM"):
        kvm.volume_wipe(pname, vname)
    ret = kvm_state.pool_absent(pname, purge=True)
    assert ret["result"] is False and "in use" in ret["comment"]
    with pytest.raises(CommandExecutionError, match="in use"):
        kvm.pool_delete(pname)
    assert os.path.exists(disk) and kvm.pool_show(pname)["state"] == "running"
    dom.destroy()
    assert _sha(disk) == before


def test_wipe_and_delete(kvm, pool, vname):
    pname, path = pool
    kvm.volume_create(pname, vname, "1M", format="raw", preallocation="full")
    disk = os.path.join(path, vname)
    with open(disk, "r+b") as fh:
        fh.write(b"x" * 4096)
    assert kvm.volume_wipe(pname, vname) is True
    with open(disk, "rb") as fh:
        assert fh.read(4096) == b"\0" * 4096
    assert kvm.volume_delete(pname, vname) is True
    assert not os.path.exists(disk)
    with pytest.raises(CommandExecutionError, match="does not exist"):
        kvm.volume_delete(pname, vname)


@pytest.mark.parametrize("bad", ["../escape.img", "a/b.img", "..", ".hidden"])
def test_volume_names_are_validated(kvm, kvm_state, pool, bad):
    pname, _ = pool
    with pytest.raises(SaltInvocationError, match="volume name"):
        kvm.volume_create(pname, bad, "1M")
    ret = kvm_state.volume_present(bad, pool=pname, size="1M")
    assert ret["result"] is False and "volume name" in ret["comment"]


def test_volume_state_argument_errors(kvm_state, pool, vname):
    pname, _ = pool
    ret = kvm_state.volume_present(vname, pool=pname, size="20X")
    assert ret["result"] is False and f"{vname}:size: '20X' is not a size" in ret["comment"]
    ret = kvm_state.volume_present(vname, pool=pname, size="1M", format="raw", backing="base.img")
    assert ret["result"] is False and "raw volume cannot have a backing" in ret["comment"]
    ret = kvm_state.volume_present(vname, pool="kvt-no-such-pool", size="1M")
    assert ret["result"] is False and "does not exist" in ret["comment"]


def test_import_reports_progress(pool, image, monkeypatch, caplog):
    from salt_kvm import progress, storage_volumes  # pylint: disable=import-outside-toplevel
    from salt_kvm.conn import Session  # pylint: disable=import-outside-toplevel

    pname, _ = pool
    src, digest = image
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # every chunk is reported
    monkeypatch.setattr(storage_volumes, "CHUNK", 64 * 1024)
    seen = []
    session = Session(sandbox.URI)
    try:
        with caplog.at_level("INFO", logger="salt_kvm.storage_volumes"):
            shown = storage_volumes.volume_import(
                session,
                pname,
                sandbox.uid("pg-") + ".qcow2",
                src,
                sha256=digest,
                progress=seen.append,
            )
    finally:
        session.close()
    assert shown["format"] == "qcow2"
    assert (
        len(seen) >= 2 and seen[-1]["percent"] == 100 and seen[-1]["bytes"] == os.path.getsize(src)
    )
    assert [e["bytes"] for e in seen] == sorted(e["bytes"] for e in seen)
    assert "importing" in caplog.text and "%" in caplog.text


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk"])
def test_create_each_format(kvm, pool, fmt):
    pname, path = pool
    name = sandbox.uid("f-") + "." + fmt
    shown = kvm.volume_create(pname, name, "2M", format=fmt)
    try:
        assert shown["format"] == fmt and shown["capacity"] == 2 * M
        assert _info(shown["path"])[0]["format"] == fmt
    finally:
        kvm.volume_delete(pname, name)


# --- credentials in an image URL, redirects ---------------------------------------------------


class _AuthImage(http_servers.QuietHandler):
    """``/img.raw`` needs Basic auth ``kvtuser:<password>``; ``/same``, ``/other`` and ``/ftp``
    redirect."""

    body = os.urandom(64 * 1024)
    password = "kvt-" + os.urandom(6).hex()
    seen = []

    def do_GET(self):  # noqa: N802
        self.seen.append((self.path, self.headers.get("Authorization")))
        port = self.server.server_address[1]
        redirects = {
            "/same": f"http://127.0.0.1:{port}/img.raw",
            "/other": f"http://localhost:{port}/img.raw",
            "/ftp": "ftp://127.0.0.1/img.raw",
        }
        if self.path in redirects:
            self.send_response(302)
            self.send_header("Location", redirects[self.path])
            self.end_headers()
            return
        import base64  # pylint: disable=import-outside-toplevel

        if (
            self.headers.get("Authorization")
            != "Basic " + base64.b64encode(f"kvtuser:{self.password}".encode()).decode()
        ):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="kvt"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def auth_url():
    with http_servers.serve(_AuthImage) as server:
        _AuthImage.seen.clear()
        yield f"http://kvtuser:{_AuthImage.password}@127.0.0.1:{server.server_address[1]}"


def test_url_credentials_are_sent_as_basic_auth_and_never_shown(pool, auth_url, caplog):
    from salt_kvm import storage_volumes  # pylint: disable=import-outside-toplevel
    from salt_kvm.conn import Session  # pylint: disable=import-outside-toplevel

    pname, path = pool
    pw = _AuthImage.password
    session = Session(sandbox.URI)
    try:
        with caplog.at_level("DEBUG"):
            names = {how: sandbox.uid("au-") + ".raw" for how in ("direct", "same", "other", "ftp")}
            ret = storage_volumes.volume_present(
                session, names["direct"], pool=pname, source=f"{auth_url}/img.raw", format="raw"
            )
            assert ret["result"] is True, ret["comment"]
            assert ret["changes"]["volume"]["new"]["source"] == f"{auth_url}/img.raw".replace(
                pw, "***"
            )
            assert (
                _sha(os.path.join(path, names["direct"]))
                == hashlib.sha256(_AuthImage.body).hexdigest()
            )
            # a redirect on the same origin keeps the credentials
            ret = storage_volumes.volume_present(
                session, names["same"], pool=pname, source=f"{auth_url}/same", format="raw"
            )
            assert ret["result"] is True, ret["comment"]
            # ... another origin (localhost is not 127.0.0.1) does not get them
            other = storage_volumes.volume_present(
                session, names["other"], pool=pname, source=f"{auth_url}/other", format="raw"
            )
            assert other["result"] is False and "401" in other["comment"], other
            # a redirect to another scheme is refused
            ftp = storage_volumes.volume_present(
                session, names["ftp"], pool=pname, source=f"{auth_url}/ftp", format="raw"
            )
            assert ftp["result"] is False and "only http and https" in ftp["comment"], ftp
    finally:
        session.close()
    assert ("/img.raw", None) in _AuthImage.seen and not any(
        p == "/ftp" and a for p, a in _AuthImage.seen[1:2]
    )
    assert [a is None for p, a in _AuthImage.seen if p == "/img.raw"][
        -1
    ]  # the request after the cross-origin redirect
    for shown in (ret, other, ftp):
        assert pw not in repr(shown)
    assert pw not in caplog.text and "kvtuser:***@" in caplog.text
    assert sorted(f for f in os.listdir(path) if f.startswith("kvt-au-")) == sorted(
        [names["direct"], names["same"]]
    )


# --- the listing is patched after a write, not reloaded ------------------------------------------


def test_first_apply_of_many_volumes_loads_the_listing_once(conn):
    """F1: the memoised volume listing is patched after each create (not dropped and reloaded:
    that is every volume's XML again per state, quadratic), and stays true to libvirt."""
    from salt_kvm import storage_volumes  # pylint: disable=import-outside-toplevel
    from salt_kvm.conn import Session  # pylint: disable=import-outside-toplevel

    class Counting(Session):
        loads = 0

        def memo(self, key, loader):
            if key == f"storage:vols:{pname}" and key not in self.cache:
                Counting.loads += 1
            return super().memo(key, loader)

    obj, path = sandbox.make_dir_pool(conn)
    pname = obj.name()
    session = Counting(sandbox.URI)
    try:
        vols = [f"v{i:02d}.qcow2" for i in range(20)]
        for vol in vols:
            ret = storage_volumes.volume_present(session, vol, pool=pname, size="1M")
            assert ret["result"] is True and ret["changes"], ret
        assert Counting.loads == 1
        grow = storage_volumes.volume_present(session, vols[0], pool=pname, size="2M")
        assert grow["result"] is True and grow["changes"] == {"size": {"old": M, "new": 2 * M}}, (
            grow
        )
        gone = storage_volumes.volume_absent(session, vols[1], pool=pname)
        assert gone["result"] is True and gone["changes"], gone
        assert (
            Counting.loads == 1
        )  # (a delete looks at every pool's volumes once: one of them may back another)
        patched = storage_volumes.volume_list(session, pname)
        fresh = Session(sandbox.URI)
        try:
            assert patched == storage_volumes.volume_list(fresh, pname)
        finally:
            fresh.close()
        assert len(patched) == 19 and patched[vols[0]]["capacity"] == 2 * M
    finally:
        session.close()
        import libvirt  # pylint: disable=import-outside-toplevel

        with contextlib.suppress(libvirt.libvirtError):
            for vol in obj.listAllVolumes(0):
                vol.delete(0)
            obj.destroy()
            obj.undefine()
        shutil.rmtree(path, ignore_errors=True)
