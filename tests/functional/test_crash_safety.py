"""Crash-safe long operations, and sizes as libvirt stores them.

A real ``salt-call`` doing an import, a clone or a wipe is killed with
SIGKILL at several points; the next run must never take what was left for
done: it converges, and the volume holds either the complete new content or
nothing that a later run accepts (for a wipe: the volume is reported as
partly wiped until it is wiped again).

Declared sizes that the image format rounds (``1.1G``, ``1000`` bytes of a
qcow2) and an imported image grown to a declared size converge in one run,
with ``test=True`` predicting exactly that run.
"""

import hashlib
import os
import signal
import subprocess
import time

import pytest

from tests.support import sandbox
from tests.support.saltcall import SaltCall
from tests.support.slow_http import slow_image_url

M = 1024**2


def sha(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(M), b""):
            digest.update(chunk)
    return digest.hexdigest()


def allocated(path):
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return -1


def kill_when(cmd, env, cwd, ready, timeout=120):
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` is true; True if it was killed
    (False if it ended first)."""
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
        raise AssertionError(f"{cmd} did not reach the kill point within {timeout}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def call(tmp_path):
    return SaltCall(tmp_path / "salt")


@pytest.fixture(scope="module")
def url():
    with slow_image_url(24 * M) as address:
        yield address


@pytest.mark.parametrize(
    ("point", "checked"),
    [("created", False), ("quarter", False), ("three-quarters", False), ("three-quarters", True)],
    ids=["created", "quarter", "three-quarters", "three-quarters-sha256"],
)
def test_an_import_killed_at_any_point_converges_on_the_next_apply(
    call, dir_pool, url, kvm, point, checked
):
    pname, path = dir_pool
    import urllib.request  # pylint: disable=import-outside-toplevel

    data = urllib.request.urlopen(url, timeout=60).read()  # noqa: S310  # 127.0.0.1 test server
    digest = hashlib.sha256(data).hexdigest()
    target = os.path.join(path, "img.raw")
    args = [
        "state.single",
        "kvm.volume_present",
        "img.raw",
        f"pool={pname}",
        f"source={url}",
        "format=raw",
    ]
    if checked:
        args.append(f"sha256={digest}")
    fraction = {"created": None, "quarter": 0.25, "three-quarters": 0.75}[point]
    ready = (
        (lambda: os.path.exists(target))
        if fraction is None
        else (lambda: allocated(target) > fraction * len(data))
    )
    killed = kill_when(call.command(*args), call.env, str(call.root), ready)
    assert killed, "the import finished before the kill point"
    # what the next run predicts, then does: the import again, whole
    code, out, err = call.run(*args, "test=True")
    ret = next(iter(out.values()))
    assert ret["result"] is None and "volume" in ret["changes"], ret
    code, out, err = call.run(*args)
    ret = next(iter(out.values()))
    assert ret["result"] is True and "volume" in ret["changes"], (ret, err)
    assert sha(target) == digest
    code, out, err = call.run(*args)
    ret = next(iter(out.values()))
    assert ret["result"] is True and ret["changes"] == {}, ret
    assert "incomplete" not in str(kvm.volume_show(pname, "img.raw"))


def again(run, timeout=600):
    """``run()`` until it succeeds: libvirtd finishes a copy or a wipe whose caller was
    killed (it owns the job), and refuses the volume meanwhile ("still in use")."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = run()
        if code == 0 or time.monotonic() > deadline:
            return code, out, err
        assert "still in use" in f"{out}{err}", (out, err)
        time.sleep(1)


def _fill(path, size):
    with open(path, "wb") as fh:
        for i in range(size // M):
            fh.write(hashlib.sha256(str(i).encode()).digest() * (M // 32))


def test_a_clone_killed_midway_is_done_again_by_the_next_clone(call, dir_pool, kvm):
    pname, path = dir_pool
    src = os.path.join(path, "src.raw")
    _fill(src, 256 * M)
    kvm.pool_refresh(pname)
    dst = os.path.join(path, "dst.raw")
    killed = kill_when(
        call.command("kvm.volume_clone", pname, "src.raw", "dst.raw"),
        call.env,
        str(call.root),
        lambda: allocated(dst) > 16 * M,
    )
    if not killed:
        pytest.skip("the clone finished before it could be killed")
    shown = kvm.volume_show(pname, "dst.raw")
    assert "clone" in shown.get("incomplete", ""), shown
    code, out, err = again(lambda: call.run("kvm.volume_clone", pname, "src.raw", "dst.raw"))
    assert code == 0, (out, err)
    assert sha(dst) == sha(src)
    assert "incomplete" not in kvm.volume_show(pname, "dst.raw")


def test_a_wipe_killed_midway_is_reported_until_it_is_done(call, dir_pool, kvm):
    pname, path = dir_pool
    vol = os.path.join(path, "data.raw")
    _fill(vol, 768 * M)
    kvm.pool_refresh(pname)

    def zeroed_some():
        with open(vol, "rb") as fh:
            return fh.read(4096) == bytes(4096)

    killed = kill_when(
        call.command("kvm.volume_wipe", pname, "data.raw"), call.env, str(call.root), zeroed_some
    )
    if not killed:
        pytest.skip("the wipe finished before it could be killed")
    shown = kvm.volume_show(pname, "data.raw")
    assert "wipe" in shown.get("incomplete", ""), shown
    code, out, err = again(lambda: call.run("kvm.volume_wipe", pname, "data.raw"))
    assert code == 0 and out is True, (out, err)
    assert "incomplete" not in kvm.volume_show(pname, "data.raw")
    with open(vol, "rb") as fh:
        assert all(not any(chunk) for chunk in iter(lambda: fh.read(M), b""))


@pytest.mark.parametrize("size", ["1.1G", "1000", "1M", "3.3M", "1.0001G", "513"])
def test_every_valid_qcow2_size_converges_in_one_run(kvm_state, dir_pool, size):
    pname, _ = dir_pool
    predicted = kvm_state.volume_present(
        "v.qcow2", pool=pname, size=size, format="qcow2", test=True
    )
    assert predicted["result"] is None, predicted
    ret = kvm_state.volume_present("v.qcow2", pool=pname, size=size, format="qcow2")
    assert ret["result"] is True, ret["comment"]
    assert ret["changes"] == predicted["changes"]
    again = kvm_state.volume_present("v.qcow2", pool=pname, size=size, format="qcow2")
    assert again["result"] is True and again["changes"] == {}, again


def test_an_imported_image_grown_to_its_declared_size_keeps_its_sha256(kvm_state, dir_pool, names):
    pname, _ = dir_pool
    src = os.path.join(sandbox.files_dir(names("src-")), "base.raw")
    _fill(src, 4 * M)
    digest = sha(src)
    args = {"pool": pname, "source": src, "sha256": digest, "size": "16M"}
    ret = kvm_state.volume_present("base.raw", **args)
    assert ret["result"] is True, ret["comment"]
    again = kvm_state.volume_present("base.raw", **args)
    assert again["result"] is True and again["changes"] == {}, again
    # the declared sha256 is still checked: another one is refused, not silently accepted
    other = kvm_state.volume_present("base.raw", **dict(args, sha256="0" * 64))
    assert other["result"] is False and "sha256" in other["comment"], other


@pytest.mark.parametrize("merger", ["salt-kvm", "libvirt"])
def test_a_live_merge_killed_midway_is_resumed_by_the_next_delete(call, tiny_vm, kvm, merger):
    """SIGKILL while a running VM's overlay is committed: the snapshot stays (it is the
    mark) until the merge is whole, and the next delete resumes it and pivots; the VM's
    disk holds every byte written to the overlay. libvirt 9 merges an external snapshot
    itself (in the daemon, which finishes the job after its caller died); salt-kvm merges
    one whose parent is internal (libvirt refuses those), and resumes QEMU's commit job."""
    from tests.support.images import reads, write_pattern  # pylint: disable=import-outside-toplevel

    dom, disk = tiny_vm(size="512M")
    write_pattern(disk, 5, 0)
    if merger == "salt-kvm":
        kvm.snapshot_create(dom.name(), "int")  # shut off: internal, disk only
    snap = kvm.snapshot_create(dom.name(), "ext", memory=False, disk_only=True, external=True)
    overlay = snap["disks"][0]["file"]
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 6 1M 384M", overlay],
        check=True,
        capture_output=True,
    )
    dom.create()

    def committing():
        info = dom.blockJobInfo("vda", 0)
        return bool(info) and 0 < info.get("cur", 0) < info.get("end", 1)

    killed = kill_when(
        call.command("kvm.snapshot_delete", dom.name(), "ext"), call.env, str(call.root), committing
    )
    if not killed:
        pytest.skip("the merge finished before it could be killed")
    deadline = time.monotonic() + 120
    while "ext" in [s.getName() for s in dom.listAllSnapshots(0)]:
        code, out, err = call.run("kvm.snapshot_delete", dom.name(), "ext")
        assert code == 0 or "not found" in f"{out}{err}" or time.monotonic() < deadline, (out, err)
        if code != 0:
            time.sleep(1)
    assert not os.path.exists(overlay)
    assert dom.XMLDesc(0).count("<source file=") == 1 and disk in dom.XMLDesc(0)
    dom.destroy()
    ok, text = reads(disk, {0: 5, M: 6, 200 * M: 6, 384 * M: 6})
    assert ok, text


def test_a_grow_to_an_odd_size_converges_in_one_run(kvm_state, dir_pool):
    pname, _ = dir_pool
    assert kvm_state.volume_present("g.qcow2", pool=pname, size="1M")["result"] is True
    for size in ("3.3M", "5.0001M"):
        predicted = kvm_state.volume_present("g.qcow2", pool=pname, size=size, test=True)
        ret = kvm_state.volume_present("g.qcow2", pool=pname, size=size)
        assert (
            ret["result"] is True
            and ret["changes"] == predicted["changes"]
            and "size" in ret["changes"]
        ), ret
        again = kvm_state.volume_present("g.qcow2", pool=pname, size=size)
        assert again["result"] is True and again["changes"] == {}, again
