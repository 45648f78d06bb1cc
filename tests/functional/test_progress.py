"""Progress of long work through the real ``salt-call`` and the real libvirtd: a
throttled import, a clone, a wipe, and the merge of an external snapshot of a
running and of a stopped tiny VM each write INFO lines with percent and rate to
the real minion log (the ``log_file`` of the salt-call config)."""

import os
import re
import subprocess
import time

import pytest

from tests.conftest import REPO
from tests.support import sandbox, slow_http
from tests.support.saltcall import SaltCall, state_results

M = 1024**2
SIZE = 64 * M
#: a progress line: "<what>: 42% (27M of 64M, 5.3M/s, ETA 7.0s, 5.1s elapsed)"
TICK = re.compile(
    r": (\d+)% \(([\d.]+[KMGT]?) of ([\d.]+[KMGT]?), ([\d.]+[KMGT]?)/s, ETA [\dhms.]+, [\dhms.]+ "
    r"elapsed\)$"
)
DONE = re.compile(
    r": done, 100% \(([\d.]+[KMGT]?) of ([\d.]+[KMGT]?), ([\d.]+[KMGT]?)/s, [\dhms.]+ elapsed\)$"
)


@pytest.fixture
def salt_call(tmp_path):
    """``salt_call(interval)``: a masterless salt-call whose progress interval is
    ``interval`` s, set in the minion config, or in the ``kvm`` pillar with ``pillar=True``."""

    def make(interval, pillar=False):
        setting = {"progress": {"interval": interval}}
        return SaltCall(
            tmp_path / f"salt-{interval}-{'pillar' if pillar else 'config'}",
            extra_config=None if pillar else {"kvm": setting},
            pillar=setting if pillar else None,
            env={"PYTHONPATH": str(REPO)},  # this checkout, not an installed copy
        )

    return make


def info_lines(call, what):
    """The INFO lines of the real minion log that start with ``what:`` (the message part)."""
    out = []
    for line in (call.root / "minion.log").read_text(errors="replace").splitlines():
        if "[INFO" in line and f"{what}:" in line:
            out.append(line[line.index(f"{what}:") :])
    return out


def assert_reported(lines, what, ticks=0):
    """``lines`` hold a start, at least ``ticks`` progress lines with percent and rate, and a done
    line."""
    assert lines and lines[0].startswith(f"{what}: started"), lines
    done = [m for m in map(DONE.search, lines) if m]
    assert len(done) == 1 and lines[-1] == done[0].string, lines
    assert not done[0].group(3).startswith("0/"), lines  # a rate
    found = [m for m in map(TICK.search, lines) if m]
    assert len(found) >= ticks, lines
    percents = [int(m.group(1)) for m in found]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents), lines
    return percents


@pytest.fixture
def pool(dir_pool):
    return dir_pool


def full_raw(conn, pname, path, name, size=SIZE):
    """A raw volume of ``size`` filled with random data (every byte allocated)."""
    pool = conn.storagePoolLookupByName(pname)
    pool.refresh(0)
    filename = os.path.join(path, name)
    with open(filename, "wb") as fh:
        fh.writelines(os.urandom(M) for _ in range(size // M))
    pool.refresh(0)
    return filename


# --- import from a throttled HTTP server -------------------------------------------------


@pytest.fixture
def slow_url():
    with slow_http.slow_image_url(SIZE) as url:
        yield url


def test_import_through_the_state_reports_percent_and_rate(salt_call, pool, slow_url):
    pname, path = pool
    call = salt_call(
        "0.2s", pillar=True
    )  # the interval from the kvm pillar (kvm:progress:interval)
    name = sandbox.uid("pi-") + ".raw"
    started = time.monotonic()
    rc, data, err = call.run(
        "state.single",
        "kvm.volume_present",
        name,
        f"pool={pname}",
        f"source={slow_url}",
        "format=raw",
    )
    took = time.monotonic() - started
    ret = list(state_results(data).values())
    assert rc == 0 and ret and ret[0]["result"] is True, (rc, data, err)
    assert os.path.getsize(os.path.join(path, name)) == SIZE
    what = f"importing {pname}/{name}"
    lines = info_lines(call, what)
    percents = assert_reported(lines, what, ticks=3)
    assert len(set(percents)) >= 3, lines  # throttled: several distinct reports, not one per chunk
    assert len(lines) <= took / 0.2 + 3, lines  # at most one per interval, plus start and done
    assert "127.0.0.1" not in "\n".join(lines)  # the lines name the volume, never the source


# --- clone and wipe ------------------------------------------------------------------------


def test_clone_and_wipe_report_percent_and_rate(salt_call, pool, conn):
    pname, path = pool
    call = salt_call(0)
    src = sandbox.uid("ps-") + ".raw"
    filename = full_raw(conn, pname, path, src)

    clone = src.replace(".raw", ".qcow2")
    rc, data, err = call.run("kvm.volume_clone", pname, src, clone, "format=qcow2")
    assert rc == 0 and data["format"] == "qcow2", (rc, data, err)
    what = f"cloning {pname}/{src} to {clone}"
    assert_reported(info_lines(call, what), what)
    assert info_lines(call, what)[0] == f"{what}: started (64M)"

    rc, data, err = call.run("kvm.volume_wipe", pname, src)
    assert rc == 0 and data is True, (rc, data, err)
    what = f"wiping {pname}/{src}"
    lines = info_lines(call, what)
    assert_reported(lines, what)
    assert lines[0] == f"{what}: started (64M)" and "done, 100% (64M of 64M" in lines[-1], lines
    with open(filename, "rb") as fh:
        assert not fh.read(4 * M).strip(b"\0")


# --- snapshot merge ------------------------------------------------------------------------


def write_data(path, size=32 * M):
    out = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {size}", path],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "wrote" in out.stdout, out.stdout + out.stderr


def overlay_of(dom):
    import libvirt  # pylint: disable=import-outside-toplevel
    from lxml import etree  # pylint: disable=import-outside-toplevel

    return (
        etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        .find("devices/disk/source")
        .get("file")
    )


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_external_snapshot_merge_reports_percent_and_rate(salt_call, tiny_vm, running):
    """An external snapshot on an internal one (libvirt 9.0 refuses to delete it): salt-kvm
    merges, with a block commit (running) or ``qemu-img commit -p`` (stopped)."""
    dom, disk = tiny_vm(start=running, size="512M")
    vm = dom.name()
    call = salt_call(0)
    for args in (("i1",), ("e1", "external=True", "memory=False")):
        rc, snap, err = call.run("kvm.snapshot_create", vm, *args)
        assert rc == 0, (rc, snap, err)
    overlay = overlay_of(dom)
    assert overlay != disk
    if running:
        dom.destroy()
    write_data(overlay, 256 * M)  # for the merge to move
    if running:
        dom.create()
        rc, data, err = call.run("kvm.snapshot_delete", vm, "e1")
        assert rc == 0 and data == {"deleted": ["e1"], "merged": ["e1"]}, (rc, data, err)
    else:
        rc, data, err = call.run("state.single", "kvm.snapshot_absent", vm, "snapshot=e1")
        ret = list(state_results(data).values())
        assert rc == 0 and ret and ret[0]["result"] is True and ret[0]["changes"], (rc, data, err)
    assert not os.path.exists(overlay) and overlay_of(dom) == disk
    what = f"merging {overlay} into {disk} (snapshot 'e1' of VM '{vm}', disk vda)"
    lines = info_lines(call, what)
    assert_reported(lines, what, ticks=1)
    assert lines[0] == f"{what}: started (512M)", lines  # the disk's virtual size


def test_external_snapshot_libvirt_deletes_itself_reports_its_block_job(salt_call, tiny_vm):
    """A disk-only snapshot of a running VM libvirt deletes itself: its block job is watched."""
    dom, disk = tiny_vm(start=True, size="512M")
    vm = dom.name()
    call = salt_call(0)
    rc, snap, err = call.run("kvm.snapshot_create", vm, "e1", "memory=False")
    assert rc == 0 and snap["kind"] == "external", (rc, snap, err)
    overlay = overlay_of(dom)
    dom.destroy()
    write_data(overlay, 256 * M)
    dom.create()
    rc, data, err = call.run("kvm.snapshot_delete", vm, "e1")
    assert rc == 0 and data["deleted"] == ["e1"], (rc, data, err)
    if data["merged"]:
        pytest.skip(
            "this libvirt refuses to delete external snapshots: salt-kvm merged it (tested above)"
        )
    assert not os.path.exists(overlay) and overlay_of(dom) == disk
    what = f"deleting external snapshot 'e1' of VM '{vm}' (libvirt merges vda)"
    lines = info_lines(call, what)
    assert lines and lines[0].startswith(f"{what}: started (") and lines[0].endswith("256M)"), (
        lines
    )  # the block job's end
    assert TICK.search(lines[1]) and DONE.search(lines[-1]), lines
