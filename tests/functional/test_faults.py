"""Faults during apply, injected for real; each ends with a clear failure, the
host as it was (or converging on the next apply) and no data lost.

* **libvirtd unreachable** before the run: the session points at a dead socket
  (``qemu:///system?socket=/nonexistent/...``). The shared libvirtd is never
  stopped (other test runs use it); a dead socket is what a stopped daemon
  looks like to a client.
* **libvirtd lost in the middle** of a run: the session talks to libvirtd
  through a unix-socket relay of our own, which is cut at the moment the pool
  is started (every connection dropped, as when the daemon dies); then the
  relay comes back, as a restarted daemon would.
* **a volume import interrupted**: an HTTP server on 127.0.0.1 drops the
  connection half-way.
* **disk full**: a dir pool on a 24 MiB ext4 loop filesystem.
* **netlink fails in the middle of an uplink migration** (after the address left
  the NIC), and **the probe crashes**: injected inside the bridge library.
* **two ``state.apply kvm`` at once** on one host.

Volumes are checksummed before and after; nothing is lost.
"""

import contextlib
import errno
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from tests.conftest import REPO
from tests.support import http_servers, sandbox
from tests.support.saltcall import SaltCall, state_results

M = 1024**2
DEAD_URI = "qemu:///system?socket=/nonexistent/kvt-libvirt-sock"
REAL_SOCKET = "/run/libvirt/libvirt-sock"


def sha(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_data(path, size, seed):
    with open(path, "wb") as fh:
        block = hashlib.sha256(seed.encode()).digest() * (65536 // 32)
        for _ in range(size // len(block)):
            fh.write(block)


def pool_names(conn):
    return {p.name() for p in conn.listAllStoragePools(0)}


def no_traceback(*texts):
    for text in texts:
        assert "Traceback" not in str(text), text


@pytest.fixture
def session_for():
    from salt_kvm import conn as kconn  # pylint: disable=import-outside-toplevel

    made = []

    def make(uri=sandbox.URI):
        made.append(kconn.Session(uri))
        return made[-1]

    try:
        yield make
    finally:
        for session in made:
            session.close()


# --- libvirtd unreachable -----------------------------------------------------------------


def test_libvirtd_unreachable_fails_every_state_clearly_and_changes_nothing(tmp_path, conn, names):
    pname = names("fd-")
    target = os.path.join(sandbox.FILES_ROOT, pname)
    pillar = {
        "connection": {"uri": DEAD_URI},
        "pools": {pname: {"type": "dir", "target": target, "volumes": {"a.qcow2": {"size": "1M"}}}},
        "networks": {names("fn-"): {"mode": "isolated", "address": "203.0.113.1/28"}},
    }
    call = SaltCall(
        tmp_path / "salt", file_roots=[REPO], pillar=pillar, env={"PYTHONPATH": str(REPO)}
    )
    rc, data, err = call.run("state.apply", "kvm")
    results = state_results(data)
    assert rc != 0 and results, (rc, data, err)
    for sid, ret in results.items():
        assert ret["result"] is False, (sid, ret)
        if sid.startswith(("kvm-pool-", "kvm-network-")):
            assert (
                "cannot connect to libvirt at qemu:///system?socket=/nonexistent" in ret["comment"]
            ), ret["comment"]
            assert "\n" not in ret["comment"].strip(), ret["comment"]
        else:  # the volume waits for its pool
            assert "requisite" in ret["comment"].lower() or "cannot connect" in ret["comment"], ret[
                "comment"
            ]
    no_traceback(data, err)
    assert pname not in pool_names(conn) and not os.path.exists(target)
    # the execution module: one line, no traceback
    rc, data, err = call.run("kvm.pool_list")
    assert rc != 0 and "cannot connect to libvirt" in f"{data}{err}"
    no_traceback(data, err)


class Relay:
    """A unix-socket relay to the real libvirtd that can be cut (all connections dropped) and
    restored."""

    def __init__(self, path):
        self.path = path
        self.server = None
        self.conns = []
        self.lock = threading.Lock()

    def start(self):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()
        return self

    def _accept(self, server):
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(REAL_SOCKET)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self):
        """Like libvirtd dying: the listening socket is gone and every connection is reset."""
        if self.server is not None:
            self.server.close()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self.lock:
            for s in self.conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.conns = []


@pytest.fixture
def relay(names):
    if not os.path.exists(REAL_SOCKET):
        pytest.skip(f"no libvirtd socket at {REAL_SOCKET}")
    directory = sandbox.files_dir(names("fr-"))
    rel = Relay(os.path.join(directory, "libvirt-sock")).start()
    try:
        yield rel
    finally:
        rel.cut()


def test_libvirtd_lost_while_a_pool_starts_fails_clearly_then_converges(
    relay, names, conn, dir_pool, session_for, monkeypatch
):
    import libvirt  # pylint: disable=import-outside-toplevel

    from salt_kvm import storage  # pylint: disable=import-outside-toplevel

    # data elsewhere on the host, checksummed
    _other, other_path = dir_pool
    keep = os.path.join(other_path, "keep.raw")
    write_data(keep, 4 * M, "keep")
    before = sha(keep)

    uri = f"qemu:///system?socket={relay.path}"
    pname = names("fl-")
    target = os.path.join(sandbox.FILES_ROOT, pname)
    real_create = libvirt.virStoragePool.create

    def dies_while_starting(pool, flags=0):
        relay.cut()  # libvirtd "dies" as the pool starts
        return real_create(pool, flags)

    monkeypatch.setattr(libvirt.virStoragePool, "create", dies_while_starting)
    ret = storage.pool_present(session_for(uri), pname, type="dir", target=target)
    assert ret["result"] is False, ret
    comment = ret["comment"]
    print("libvirtd lost:", comment)
    assert pname in comment and (
        "connect" in comment or "closed" in comment or "recv" in comment or "write" in comment
    ), comment
    no_traceback(comment)
    monkeypatch.undo()

    # libvirtd is back: the next apply converges from whatever was left
    relay.start()
    ret = storage.pool_present(session_for(uri), pname, type="dir", target=target)
    assert ret["result"] is True, ret
    assert conn.storagePoolLookupByName(pname).isActive()
    again = storage.pool_present(session_for(uri), pname, type="dir", target=target)
    assert again["result"] is True and again["changes"] == {}, again
    assert sha(keep) == before


def test_libvirtd_lost_as_a_snapshot_is_taken_keeps_the_disk_and_converges(
    relay, tiny_vm, session_for, monkeypatch, tmp_path
):
    """The daemon took the snapshot but the answer never came back: the state fails clearly, the
    disk's content is intact, and the next run finds the snapshot and changes nothing."""
    import libvirt  # pylint: disable=import-outside-toplevel

    from salt_kvm import snapshot  # pylint: disable=import-outside-toplevel

    dom, disk = tiny_vm()
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", disk],
        check=True,
        capture_output=True,
    )
    copy = tmp_path / "before.qcow2"
    shutil.copyfile(disk, copy)
    uri = f"qemu:///system?socket={relay.path}"
    real = libvirt.virDomain.snapshotCreateXML

    def answer_lost(domain, xml, flags=0):
        real(domain, xml, flags)
        relay.cut()
        raise libvirt.libvirtError("Cannot recv data: Connection reset by peer")

    monkeypatch.setattr(libvirt.virDomain, "snapshotCreateXML", answer_lost)
    ret = snapshot.snapshot_present(session_for(uri), dom.name(), "s1")
    assert ret["result"] is False and "Connection reset" in ret["comment"], ret
    no_traceback(ret["comment"])
    monkeypatch.undo()
    relay.start()
    ret = snapshot.snapshot_present(session_for(uri), dom.name(), "s1")
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert [s.getName() for s in dom.listAllSnapshots(0)] == ["s1"]
    check = subprocess.run(
        ["qemu-img", "check", "-q", disk], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    same = subprocess.run(
        ["qemu-img", "compare", "-q", str(copy), disk], capture_output=True, text=True, check=False
    )
    assert same.returncode == 0, "the guest's data changed"


# --- volume import interrupted --------------------------------------------------------------


class _Image(http_servers.QuietHandler):
    data = b""
    cut_at = None  # bytes sent before the connection drops

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()
        end = self.cut_at if self.cut_at is not None else len(self.data)
        self.wfile.write(self.data[:end])
        self.wfile.flush()
        if self.cut_at is not None:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


@pytest.fixture
def image_server():
    with http_servers.serve(_Image) as server:
        yield server


@pytest.mark.parametrize(
    "checked",
    [
        True,
        False,
    ],
    ids=["with-sha256", "without-sha256"],
)
def test_an_interrupted_import_fails_clearly_and_the_next_apply_converges(
    kvm_state, kvm, dir_pool, image_server, checked
):
    """Without sha256 only the Content-Length can tell the download was cut: it must be checked
    too."""
    pname, path = dir_pool
    keep = os.path.join(path, "keep.raw")
    write_data(keep, 2 * M, "keep-import")
    kvm.pool_refresh(pname)
    before = sha(keep)
    data = hashlib.sha256(b"image").digest() * (8 * M // 32)
    digest = hashlib.sha256(data).hexdigest()
    want = {"sha256": digest} if checked else {}
    _Image.data, _Image.cut_at = data, 3 * M
    url = f"http://127.0.0.1:{image_server.server_address[1]}/image.raw"
    try:
        ret = kvm_state.volume_present("img.raw", pool=pname, source=url, format="raw", **want)
        assert ret["result"] is False, ret
        print("import interrupted:", ret["comment"], os.listdir(path))
        no_traceback(ret["comment"])
        assert "img.raw" in ret["comment"], ret["comment"]
        left = os.path.join(path, "img.raw")
        assert not os.path.exists(left) or os.path.getsize(left) < len(data) or sha(left) != digest
        # the server is fixed: the next apply converges and the image is whole
        _Image.cut_at = None
        ret = kvm_state.volume_present("img.raw", pool=pname, source=url, format="raw", **want)
        assert ret["result"] is True, ret["comment"]
        assert sha(left) == digest
        again = kvm_state.volume_present("img.raw", pool=pname, source=url, format="raw", **want)
        assert again["result"] is True and again["changes"] == {}, again
    finally:
        _Image.cut_at = None
    assert sha(keep) == before


# --- disk full ------------------------------------------------------------------------------


@pytest.fixture
def small_fs(names):
    """A 24 MiB ext4 filesystem on a loop device, mounted under /var/tmp/kvt-files: its mount
    point."""
    if not shutil.which("losetup") or not shutil.which("mkfs.ext4"):
        pytest.skip("needs losetup and mkfs.ext4 (util-linux, e2fsprogs)")
    base = sandbox.files_dir(names("ff-"))
    image, mnt = os.path.join(base, "fs.img"), os.path.join(base, "mnt")
    os.makedirs(mnt)
    with open(image, "wb") as fh:
        fh.truncate(24 * M)
    loop = None
    try:
        loop = subprocess.run(
            ["losetup", "-f", "--show", image], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", loop], check=True, capture_output=True)
        subprocess.run(["mount", loop, mnt], check=True, capture_output=True)
        os.chmod(mnt, 0o755)
        yield mnt
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a loop filesystem here: {exc.stderr}")
    finally:
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)


def test_disk_full_fails_clearly_and_loses_nothing(kvm_state, kvm, conn, small_fs, names, tmp_path):
    pname = names("fp-")
    target = os.path.join(small_fs, "pool")
    ret = kvm_state.pool_present(pname, type="dir", target=target)
    assert ret["result"] is True, ret["comment"]
    try:
        keep = os.path.join(target, "keep.raw")
        write_data(keep, 4 * M, "keep-full")
        kvm.pool_refresh(pname)
        before = sha(keep)

        # a fully allocated volume larger than the filesystem
        ret = kvm_state.volume_present(
            "big.raw", pool=pname, size="64M", format="raw", preallocation="full"
        )
        assert ret["result"] is False, ret
        assert "space" in ret["comment"].lower(), ret["comment"]
        print("disk full, create:", ret["comment"])
        no_traceback(ret["comment"])
        assert sha(keep) == before

        # an import that does not fit: fails, leaves no partial volume behind
        src = tmp_path / "big.src"
        write_data(src, 32 * M, "src")
        ret = kvm_state.volume_present("imp.raw", pool=pname, source=str(src), format="raw")
        assert ret["result"] is False, ret
        print("disk full, import:", ret["comment"], os.listdir(target))
        no_traceback(ret["comment"])
        assert sha(keep) == before
        leftovers = sorted(set(os.listdir(target)) - {"keep.raw", "lost+found"})
        assert not leftovers or all(
            os.path.getsize(os.path.join(target, f)) < 32 * M for f in leftovers
        ), leftovers
        # the pool still works: a volume that fits is made
        ret = kvm_state.volume_present("small.qcow2", pool=pname, size="1M")
        assert ret["result"] is True, ret["comment"]
        assert conn.storagePoolLookupByName(pname).isActive()
    finally:
        with contextlib.suppress(Exception):
            pool = conn.storagePoolLookupByName(pname)
            pool.destroy()
            pool.undefine()


# --- netlink fails in the middle of an uplink migration; the probe crashes -------------------

UPLINK = {"ports": ["eno1"], "stp": False, "forward_delay": 0}


def _injected_netlink_error(*_args, **_kwargs):
    from pyroute2.netlink.exceptions import NetlinkError  # pylint: disable=import-outside-toplevel

    raise NetlinkError(errno.EBUSY, "injected: Device or resource busy")


@pytest.mark.parametrize("step", ["_add_addr", "_add_route"])
def test_netlink_failure_mid_migration_restores_the_host(kvm_state, lan, monkeypatch, step):
    """The address has left eno1 (and, for ``_add_route``, is on the bridge) when netlink fails."""
    from salt_kvm import bridge  # pylint: disable=import-outside-toplevel

    real = getattr(bridge.BridgeResource, step)
    fired = []

    def failing(*args, **kwargs):
        if fired:  # a transient fault: the rollback's own calls go through
            return real(*args, **kwargs)
        fired.append(args)
        run = args[1]  # both are static: (ipr, run, ...)
        return run(f"{step} (injected)", _injected_netlink_error)

    before = lan.dump()
    monkeypatch.setattr(bridge.BridgeResource, step, staticmethod(failing))
    ret = kvm_state.bridge_present(name="kvt-brf", netns=lan.host, **UPLINK)
    assert ret.result is False, ret.comment
    assert fired and "injected" in ret.comment and "restored" in ret.comment, ret.comment
    no_traceback(ret.comment)
    assert lan.dump() == before
    assert lan.run("ping", "-c", "1", "-W", "2", "192.0.2.1").returncode == 0
    monkeypatch.undo()
    ret = kvm_state.bridge_present(name="kvt-brf", netns=lan.host, **UPLINK)
    assert ret.result is True, ret.comment
    assert lan.run("ping", "-c", "1", "-W", "2", "192.0.2.1").returncode == 0


def test_a_crashing_probe_restores_the_host(kvm_state, lan, monkeypatch):
    from salt_kvm import bridge_probe  # pylint: disable=import-outside-toplevel

    def crash(*_args, **_kwargs):
        raise RuntimeError("injected: the probe crashed")

    before = lan.dump()
    monkeypatch.setattr(bridge_probe, "run", crash)
    ret = kvm_state.bridge_present(
        name="kvt-brp", netns=lan.host, probe={"ping": "192.0.2.1", "timeout": "2s"}, **UPLINK
    )
    assert (
        ret.result is False
        and "injected: the probe crashed" in ret.comment
        and "restored" in ret.comment
    ), ret.comment
    assert lan.dump() == before
    assert lan.run("ping", "-c", "1", "-W", "2", "192.0.2.1").returncode == 0


# --- two state.apply at once ----------------------------------------------------------------


def test_two_state_apply_at_once(tmp_path, conn, names):
    pname = names("fc-")
    target = os.path.join(sandbox.FILES_ROOT, pname)
    pillar = {
        "pools": {
            pname: {
                "type": "dir",
                "target": target,
                "volumes": {f"v{i}.qcow2": {"size": "16M"} for i in range(4)},
            }
        }
    }
    call = SaltCall(
        tmp_path / "salt", file_roots=[REPO], pillar=pillar, env={"PYTHONPATH": str(REPO)}
    )
    procs = []
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                call.command("state.apply", "kvm"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=call.env,
                cwd=str(call.root),
            )
        )
        time.sleep(0.3)
    outs = [p.communicate(timeout=300) for p in procs]
    print(
        "concurrent runs:",
        [(p.returncode, out[-300:], err[-300:]) for p, (out, err) in zip(procs, outs)],
    )
    import json  # pylint: disable=import-outside-toplevel

    runs = []
    for proc, (out, err) in zip(procs, outs):
        no_traceback(out, err)
        try:
            runs.append((proc.returncode, json.loads(out)["local"]))
        except (ValueError, KeyError):
            runs.append((proc.returncode, out + err))
    ok = [data for rc, data in runs if rc == 0 and isinstance(data, dict)]
    assert ok, runs
    for rc, data in runs:
        if rc == 0:
            continue
        # the other run waited for, or was refused by, Salt's state lock with a clear message
        text = str(data)
        assert "running" in text.lower() or all(
            r["result"] is not False for r in state_results(data).values()
        ), text
    # no corruption: every volume is a sound image, and the next run changes nothing
    for i in range(4):
        check = subprocess.run(
            ["qemu-img", "check", "-q", os.path.join(target, f"v{i}.qcow2")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    rc, data, err = call.run("state.apply", "kvm")
    assert rc == 0, (data, err)
    assert not any(r["changes"] for r in state_results(data).values()), data
