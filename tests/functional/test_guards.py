"""Guards that keep data and secrets, against the real libvirtd.

* **Secrets** (a CHAP password, a Ceph key, a password in an image URL) go
  through a real ``salt-call --local state.apply`` with the minion log at level
  ``all``, the job cache on and state events on; then every byte salt-kvm
  produced is searched for them: the state output (comments, changes), stderr,
  the minion log, every file Salt wrote under its cache, the pool XML libvirt
  keeps, the secret's XML, the execution functions' returns, the exceptions
  they raise and the events an import fires. The pillar file is the only
  place a secret may be.
* **Modes**: volume files and pool directories salt-kvm makes are not
  readable or writable by other users.
* Guards the capability tests do not already prove (see docs/safety.rst for
  the whole table) are proved here.
"""

import base64
import contextlib
import hashlib
import os
import pathlib
import re
import stat
import uuid

import pytest
from salt.exceptions import CommandExecutionError

from tests.conftest import REPO
from tests.support import http_servers, sandbox
from tests.support.saltcall import SaltCall, state_results

M = 1024**2


def _secret_forms(secret):
    """The secret as text and in the encodings a leak could take."""
    forms = {secret, secret.encode().hex(), base64.b64encode(secret.encode()).decode()}
    with contextlib.suppress(ValueError):
        raw = base64.b64decode(secret, validate=True)
        forms |= {raw.hex(), repr(raw)[2:-1]}
    return {f for f in forms if len(f) >= 8}


#: files where Salt itself keeps the pillar's values: the compiled highstate (0600, checked below)
SALT_OWN = ("highstate.cache.p", "minion.log")


def minion_log(root):
    """The minion log without Salt's own dump of the rendered pillar SLS (Salt's, not
    salt-kvm's)."""
    lines, skipping = [], False
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    for line in (pathlib.Path(root) / "minion.log").read_text(errors="replace").splitlines():
        if stamp.match(line):
            skipping = "Rendered data from file:" in line and "/pillar/" in line
        if not skipping:
            lines.append(line)
    return "\n".join(lines)


def _leaks(secrets, root, texts):
    """``[(where, form)]`` for every secret form found in ``texts`` or in a file under ``root``
    (but the pillar itself and :data:`SALT_OWN`)."""
    found = []
    for where, text in texts.items():
        for secret in secrets:
            for form in _secret_forms(secret):
                if form in (text if isinstance(text, str) else repr(text)):
                    found.append((where, form))
    for path in pathlib.Path(root).rglob("*"):
        if not path.is_file() or "pillar" in path.relative_to(root).parts or path.name == "minion":
            continue
        if path.name in SALT_OWN:
            if path.suffix == ".p":
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (
                    f"{path} is readable by others"
                )
            continue
        data = path.read_bytes()
        for secret in secrets:
            for form in _secret_forms(secret):
                if form.encode() in data:
                    found.append((str(path.relative_to(root)), form))
    return found


@pytest.fixture
def salt_call(tmp_path):
    def make(pillar):
        return SaltCall(
            tmp_path / "salt",
            file_roots=[REPO],
            pillar=pillar,
            extra_config={"log_level_logfile": "all", "cache_jobs": True, "state_events": True},
            # this checkout, not whatever copy of salt-kvm the venv has installed
            env={"PYTHONPATH": str(REPO)},
        )

    return make


def _pool_xml(conn, name):
    import libvirt  # pylint: disable=import-outside-toplevel

    with contextlib.suppress(libvirt.libvirtError):
        return conn.storagePoolLookupByName(name).XMLDesc(0)
    return ""


def _secret_xml(conn):
    return "\n".join(
        s.XMLDesc(0) for s in conn.listAllSecrets(0) if (s.usageID() or "").startswith("salt-kvm/")
    )


def test_chap_and_ceph_secrets_never_show(salt_call, names, conn, kvm):
    chap = f"kvtChap{uuid.uuid4().hex}"
    ceph = base64.b64encode(os.urandom(24)).decode()
    iscsi, rbd = names("sc-"), names("sr-")
    pillar = {
        "pools": {
            # nothing listens on port 1: the pool is defined with its secret, then fails to start
            # and is rolled back
            iscsi: {
                "type": "iscsi-direct",
                "source": {
                    "hosts": ["127.0.0.1:1"],
                    "devices": ["iqn.2026-01.org.example:kvt"],
                    "initiator": "iqn.2026-01.org.example:host",
                    "auth": {"type": "chap", "username": "vmhost", "secret": chap},
                },
            },
            rbd: {
                "type": "rbd",
                "source": {
                    "hosts": ["127.0.0.1:1"],
                    "name": "rbd",
                    "auth": {"type": "ceph", "username": "admin", "secret": ceph},
                },
            },
        }
    }
    call = salt_call(pillar)
    texts = {}
    # test=True for the whole formula (the rbd pool would wait for a monitor), then the iscsi pool
    # for real
    rc, data, err = call.run("state.apply", "kvm.storage", "test=True")
    texts["test-mode output"], texts["test-mode stderr"] = data, err
    assert rc == 0 or state_results(data), (rc, data, err)
    call.set_pillar({"pools": {iscsi: pillar["pools"][iscsi]}})
    rc, data, err = call.run("state.apply", "kvm.storage")
    texts["apply output"], texts["apply stderr"] = data, err
    results = state_results(data)
    assert results, (rc, data, err)
    ret = results[f"kvm-pool-{iscsi}"]
    assert ret["result"] is False and ret["comment"], ret  # the start failed and was rolled back
    # the same secrets through the execution module, in-process (returns and exceptions)
    shown = kvm.pool_define(rbd, **pillar["pools"][rbd])
    texts["pool_define return"] = shown
    texts["rbd pool XML"] = _pool_xml(conn, rbd)
    texts["secret XML"] = _secret_xml(conn)
    texts["pool_list"] = kvm.pool_list()
    texts["pool_show"] = kvm.pool_show(rbd)
    try:
        kvm.pool_define(rbd, **pillar["pools"][rbd])
    except CommandExecutionError as exc:  # already defined
        texts["exception"] = str(exc)
    for i, bad in enumerate(
        [
            {"hosts": ["not a host"]},
            {"auth": dict(pillar["pools"][rbd]["source"]["auth"], secret=ceph + "!")},
            {"auth": dict(pillar["pools"][rbd]["source"]["auth"], secret=ceph * 200)},
        ]
    ):
        try:
            kvm.pool_define(
                names("sx-"), type="rbd", source=dict(pillar["pools"][rbd]["source"], **bad)
            )
        except Exception as exc:  # pylint: disable=broad-except
            texts[f"bad-argument exception {i}"] = f"{type(exc).__name__}: {exc}"
        else:
            raise AssertionError(f"accepted {bad}")
    texts["minion.log (level all)"] = minion_log(call.root)
    assert "kvm.pool_present" in texts["minion.log (level all)"]
    assert ceph not in texts["rbd pool XML"]
    leaks = _leaks([chap, ceph], call.root, texts)
    assert not leaks, leaks


class _Handler(http_servers.QuietHandler):
    body = b"kvt" * 1000

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="kvt"')
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def auth_server():
    with http_servers.serve(_Handler) as server:
        yield server.server_address[1]


def test_a_password_in_an_image_url_never_shows(salt_call, names, auth_server, conn):
    password = f"kvtUrlPw{uuid.uuid4().hex[:12]}"
    pname = names("su-")
    target = sandbox.files_dir(pname)
    url = f"http://kvtuser:{password}@127.0.0.1:{auth_server}/image.raw"
    call = salt_call(
        {
            "pools": {
                pname: {
                    "type": "dir",
                    "target": target,
                    "volumes": {"img.raw": {"source": url, "format": "raw"}},
                }
            }
        }
    )
    texts = {}
    for test in ("True", "False"):
        rc, data, err = call.run("state.apply", "kvm.storage", f"test={test}")
        texts[f"output test={test}"], texts[f"stderr test={test}"] = data, err
        assert state_results(data), (rc, data, err)
    texts["minion.log"] = minion_log(call.root)
    leaks = _leaks([password], call.root, texts)
    assert not leaks, leaks


def test_import_events_carry_no_source(conn, names, auth_server):
    """The progress events of an import (``salt/kvm/volume/import``) name the volume, never the
    URL."""
    from salt_kvm import conn as kconn  # pylint: disable=import-outside-toplevel
    from salt_kvm import storage_volumes  # pylint: disable=import-outside-toplevel

    pool, _path = sandbox.make_dir_pool(conn, name=names("se-"))
    password = f"kvtEvPw{uuid.uuid4().hex[:12]}"
    events = []
    session = kconn.Session(sandbox.URI)
    try:
        with contextlib.suppress(Exception):
            storage_volumes.volume_import(
                session,
                pool.name(),
                "ev.raw",
                f"http://kvtuser:{password}@127.0.0.1:{auth_server}/x.raw",
                progress=events.append,
            )
    finally:
        session.close()
    assert not any(password in repr(e) for e in events), events


# --- modes ------------------------------------------------------------------------------------


def test_volumes_and_pool_directories_are_private(kvm, kvm_state, names):
    pname = names("sm-")
    target = os.path.join(sandbox.FILES_ROOT, pname)
    old = os.umask(0)  # the loosest umask a minion could run with
    try:
        ret = kvm_state.pool_present(pname, type="dir", target=target)
        assert ret["result"] is True, ret["comment"]
        kvm.volume_create(pname, "a.qcow2", "1M")
        kvm.volume_create(pname, "b.raw", "1M", format="raw")
        ret = kvm_state.volume_present("c.qcow2", pool=pname, size="1M")
        assert ret["result"] is True, ret["comment"]
    finally:
        os.umask(old)
    dmode = stat.S_IMODE(os.stat(target).st_mode)
    assert not dmode & 0o022, f"pool directory {target} is writable by others: {oct(dmode)}"
    for vol in ("a.qcow2", "b.raw", "c.qcow2"):
        path = os.path.join(target, vol)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert not mode & 0o077, f"volume {path} is open to others: {oct(mode)}"


# --- guards the capability tests do not prove ------------------------------------------------


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_deleting_an_external_snapshot_whose_overlay_holds_internal_ones_is_refused(kvm, tiny_vm):
    """snapshot.py's guard: merging away an overlay would destroy the internal snapshots stored in
    it.

    salt-kvm itself never stores an internal snapshot in an overlay (``snapshot_create`` refuses),
    so the internal one is made behind its back, as ``virsh snapshot-create`` would.
    """
    import libvirt  # pylint: disable=import-outside-toplevel

    dom, disk = tiny_vm()
    vm = dom.name()
    kvm.snapshot_create(vm, "e1", external=True)
    overlay = [d for d in kvm.snapshot_show(vm, "e1")["disks"] if d.get("file")][0]["file"]
    try:
        dom.snapshotCreateXML("<domainsnapshot><name>i1</name></domainsnapshot>", 0)
    except libvirt.libvirtError as exc:
        pytest.skip(
            f"libvirt will not store an internal snapshot in an external overlay here: {exc}"
        )
    before = {p: _sha(p) for p in (disk, overlay)}
    with pytest.raises(CommandExecutionError, match="are stored in the overlay"):
        kvm.snapshot_delete(vm, "e1")
    assert {p: _sha(p) for p in (disk, overlay)} == before
    assert sorted(s["name"] for s in kvm.snapshot_list(vm)) == ["e1", "i1"]


# --- a bad pillar through the real state.apply ----------------------------------------------


@pytest.fixture(scope="module")
def bad_pillar_run(tmp_path_factory, conn):
    """One real ``salt-call state.apply kvm`` with a bad pillar, shared by the tests below."""
    pname = sandbox.uid("sb-")
    target = os.path.join(sandbox.FILES_ROOT, pname)
    pillar = {
        "pools": {pname: {"type": "dir", "target": target, "volumes": {"u.qcow2": {"size": "20X"}}}}
    }
    call = SaltCall(
        tmp_path_factory.mktemp("bad-pillar"),
        file_roots=[REPO],
        pillar=pillar,
        env={"PYTHONPATH": str(REPO)},
    )
    try:
        rc, data, err = call.run("state.apply", "kvm")
        yield {"rc": rc, "data": data, "err": err, "pool": pname, "target": target, "conn": conn}
    finally:
        sandbox.remove_named([pname])


def test_a_bad_pillar_fails_the_run_naming_the_path_and_changes_nothing(bad_pillar_run):
    run = bad_pillar_run
    assert run["rc"] != 0
    data = run["data"]
    text = "\n".join(map(str, data)) if isinstance(data, list) else str(data)
    assert f"kvm:pools:{run['pool']}:volumes:u.qcow2:size: '20X' is not a size" in text, text[:2000]
    assert run["pool"] not in {p.name() for p in run["conn"].listAllStoragePools(0)}
    assert not os.path.exists(run["target"])


def test_a_bad_pillar_fails_the_run_without_a_traceback(bad_pillar_run):
    """One failed state (kvm-pillar, not one per formula part) with the error and its path (no
    render traceback)."""
    assert "Traceback" not in f"{bad_pillar_run['data']}{bad_pillar_run['err']}"
    results = state_results(bad_pillar_run["data"])
    assert list(results) == ["kvm-pillar"], bad_pillar_run["data"]
    for ret in results.values():
        assert ret["result"] is False and not ret["changes"], ret
        assert (
            ret["comment"].strip().count("\n") == 0 and "'20X' is not a size" in ret["comment"]
        ), ret["comment"]
