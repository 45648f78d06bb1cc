"""Snapshots as a real guest sees them.

The guest (tests/support/guest.py, workload ``counter``) keeps a counter in RAM
and on its disk: every 0.2 s it reads sector 0 past the page cache, checks it
holds the value it wrote last (else it prints ``KVT MISMATCH``: RAM and disk out
of step), writes the next value with O_DIRECT and prints ``KVT counter N`` once
the write is acknowledged. So a revert that brings back the disk without the RAM
(or the RAM without the disk) shows at once, a revert that reboots the guest
shows as a new ``KVT boot`` line, and a merge that loses a write shows on the
merged image.
"""

import json
import subprocess

import pytest
from salt.exceptions import CommandExecutionError

from tests.support import guest as guestlib
from tests.support import sandbox


@pytest.fixture
def counter_guest(guests):
    """A persistent guest running the counter on its own 64 MiB qcow2 disk: ``(guest, disk)``."""
    name = sandbox.uid("g-")
    disk = guestlib.disk(sandbox.files_dir(name))
    g = guests(name=name, work=["counter"], disks=[(disk, "qcow2")], define=True)
    g.wait_counter(3)
    return g, disk


def _snapshot_at(g, take):
    """Run ``take()`` and return ``(low, high)``: the counter the snapshot holds is between them."""
    low = g.counters()[-1]
    take()
    return low, g.counters()[-1]


def _assert_resumed(g, mark, low, high, ticks=5):
    """After a revert at console offset ``mark``: the same guest (no new boot) goes on counting from
    the snapshot's value, RAM and disk in step."""

    def resumed(_lines):
        values = [v for v in g.counters(mark)]
        while values and values[0] > high + 1:  # ticks the guest made before the revert stopped it
            values.pop(0)
        return values if len(values) >= ticks else None

    values = g.wait(resumed, timeout=60, since=mark, what=f"{ticks} counter ticks after the revert")
    lines = g.lines(mark)
    assert not g.mismatches(mark), (
        f"RAM and disk out of step after the revert: {g.mismatches(mark)}"
    )
    assert not [line for line in lines if line.startswith(("boot", "counter-start"))], (
        f"the guest was rebooted, not resumed: {lines}"
    )
    assert low + 1 <= values[0] <= high + 1, (
        f"resumed at {values[0]}, the snapshot was taken between {low} and {high}"
    )
    assert values == list(range(values[0], values[0] + len(values))), values


@pytest.mark.parametrize("external", [False, True], ids=["internal", "external"])
def test_revert_with_ram_resumes_the_counter_from_the_snapshot(kvm, counter_guest, external):
    """Catches: a revert that restores the disk but not the RAM (the guest reboots or sees a
    disk older than its RAM), or the RAM but not the disk (MISMATCH), or nothing at all."""
    g, _disk = counter_guest
    low, high = _snapshot_at(g, lambda: kvm.snapshot_create(g.name, "s1", external=external))
    assert kvm.snapshot_show(g.name, "s1")["state"] == "running"
    g.wait_counter(8, since=g.offset())
    assert g.counters()[-1] > high + 3
    mark = g.offset()
    kvm.snapshot_revert(g.name, "s1")
    _assert_resumed(g, mark, low, high)
    assert not g.mismatches(), g.mismatches()


def _qemu_info(path):
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def _merged_and_stopped(g, disk):
    """Stop the guest; the acknowledged counter values it printed."""
    from lxml import etree  # pylint: disable=import-outside-toplevel

    source = etree.fromstring(g.dom.XMLDesc(0)).find("devices/disk/source").get("file")
    assert source == disk, f"the guest was left on {source}, not its own image {disk}"
    assert "backing-filename" not in _qemu_info(disk), _qemu_info(disk)
    acknowledged = g.counters()
    g.dom.destroy()  # acknowledged writes went to the image with O_DIRECT (cache=none)
    return acknowledged


def test_live_merge_of_a_disk_only_snapshot_loses_no_write(kvm, counter_guest):
    """Catches: a block commit or pivot that drops writes made during the merge or leaves the
    guest on the overlay; the guest itself sees any lost write at once (MISMATCH)."""
    g, disk = counter_guest
    kvm.snapshot_create(g.name, "d1", memory=False)
    assert kvm.snapshot_show(g.name, "d1")["state"] == "disk-snapshot"
    g.wait_counter(5, since=g.offset())
    kvm.snapshot_delete(g.name, "d1")
    g.wait_counter(5, since=g.offset())
    assert not g.mismatches(), g.mismatches()
    acknowledged = _merged_and_stopped(g, disk)
    assert guestlib.check_counter_image(disk, acknowledged) == []


def test_live_merge_of_a_chain_of_three_loses_no_write(kvm, counter_guest):
    """Three disk-only snapshots, merged out of order (the middle one, the oldest, the newest):
    intermediate and active block commits with the guest writing throughout."""
    g, disk = counter_guest
    for name in ("c1", "c2", "c3"):
        kvm.snapshot_create(g.name, name, memory=False)
        g.wait_counter(3, since=g.offset())
    for name in ("c2", "c1", "c3"):
        kvm.snapshot_delete(g.name, name)
        g.wait_counter(3, since=g.offset())
    assert kvm.snapshot_list(g.name) == []
    assert not g.mismatches(), g.mismatches()
    acknowledged = _merged_and_stopped(g, disk)
    assert len(acknowledged) > 20
    assert guestlib.check_counter_image(disk, acknowledged) == []


@pytest.mark.parametrize("channel", [False, True], ids=["no-channel", "agent-not-running"])
def test_quiesce_without_a_guest_agent_fails_clearly_and_changes_nothing(kvm, guests, channel):
    """A guest with no agent channel, and one whose channel has no agent behind it: ``quiesce``
    fails naming the cause, takes no snapshot, and the guest keeps counting undisturbed."""
    name = sandbox.uid("g-")
    disk = guestlib.disk(sandbox.files_dir(name))
    g = guests(
        name=name, work=["counter"], disks=[(disk, "qcow2")], define=True, agent_channel=channel
    )
    g.wait_counter(2)
    why = "does not answer" if channel else "has no guest agent channel"
    with pytest.raises(CommandExecutionError, match=f"quiesce needs the QEMU guest agent.*{why}"):
        kvm.snapshot_create(g.name, "q1", quiesce=True)
    assert kvm.snapshot_list(g.name) == []
    g.wait_counter(3, since=g.offset())
    assert not g.mismatches()


@pytest.fixture(scope="session")
def debian_rootfs(guest_image):  # pylint: disable=unused-argument
    """The cached Debian root filesystem with qemu-guest-agent (built once with debootstrap: ~3
    min)."""
    try:
        return guestlib.rootfs()
    except (guestlib.GuestError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no Debian root filesystem for the guest agent: {exc}")
        return None


def _agent_connected(dom):
    from lxml import etree  # pylint: disable=import-outside-toplevel

    target = etree.fromstring(dom.XMLDesc(0)).find(
        "devices/channel/target[@name='org.qemu.guest_agent.0']"
    )
    return target is not None and target.get("state") == "connected"


def test_quiesce_with_a_real_guest_agent_freezes_the_filesystem(kvm, guests, debian_rootfs):
    """A guest runs Debian's qemu-guest-agent on its ext4 root filesystem while writing to it:
    ``quiesce: true`` freezes and thaws it (the agent's log on the console says so, the writer
    goes on afterwards) and the image under the snapshot is a cleanly frozen filesystem (no
    ``needs_recovery``, ``e2fsck -fn`` clean). Catches: a quiesce that does not reach the agent
    (no freeze in its log, and the image still needs journal recovery) or leaves the filesystem
    frozen (the writer stops)."""
    name = sandbox.uid("g-")
    directory = sandbox.files_dir(name)
    disk = f"{directory}/root.qcow2"
    subprocess.run(["cp", "--sparse=always", debian_rootfs, disk], check=True)
    g = guests(name=name, work=["agent"], disks=[(disk, "qcow2")], define=True, agent_channel=True)
    g.wait_line("agent", timeout=60)
    assert sandbox.wait_for(lambda: _agent_connected(g.dom), timeout=60), (
        "the guest agent did not connect"
    )
    g.wait(
        lambda lines: len([line for line in lines if line.startswith("fs ")]) >= 3,
        timeout=30,
        what="3 writes to the filesystem",
    )
    mark = g.offset()
    kvm.snapshot_create(g.name, "q1", quiesce=True)
    shown = kvm.snapshot_show(g.name, "q1")
    assert shown["state"] == "disk-snapshot" and shown["kind"] == "external", shown
    # the agent's own log (-v, on the console): the freeze it was asked for, then the thaw
    # (the agent stops logging while the filesystem is frozen and says so when it is thawed)
    thawed = "logging re-enabled due to filesystem unfreeze"
    g.wait(lambda _l: thawed in g.text(mark), timeout=30, what="the agent's thaw in its log")
    log = g.text(mark)
    assert log.index('"execute":"guest-fsfreeze-freeze"') < log.index(thawed), log[-3000:]
    g.wait(
        lambda lines: len([line for line in lines if line.startswith("fs ")]) >= 3,
        since=mark,
        timeout=30,
        what="writes after the thaw",
    )
    raw = f"{directory}/base.raw"
    sandbox.qemu_img("convert", "-U", "-O", "raw", disk, raw)
    # frozen, ext4 flushed its journal and cleared needs_recovery (a crash-consistent image of a
    # filesystem in use still has it set); and e2fsck finds nothing to fix
    header = subprocess.run(
        ["dumpe2fs", "-h", raw], capture_output=True, text=True, check=True
    ).stdout
    features = next(line for line in header.splitlines() if line.startswith("Filesystem features:"))
    assert "needs_recovery" not in features, features
    fsck = subprocess.run(["e2fsck", "-fn", raw], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
