"""Search for ways to lose data, not replays of the known ones.

A Hypothesis state machine drives a real libvirtd: it makes dir pools (and
stops and starts them), volumes with backing chains across pools, images
outside any pool, VMs (shut off and running) whose disks name their image
through other spellings of its path (a symlinked directory, ``//``, ``/./``),
and external snapshots; between those steps it tries every destructive
operation without ``force``: ``volume_delete``, ``volume_wipe``,
``volume_absent`` (predicted with ``test=True`` first), ``pool_delete``,
``pool_absent purge``, ``snapshot_delete`` (a merge).

Every image holds a pattern of its own at an offset of its own (written
with ``qemu-io``). The invariant, checked after every step: every image that
is still there reads, through its whole backing chain, exactly the patterns
of the images it is built on and zeros where any other image's pattern
would be (so a merge into a shared base shows at once), and no file a
remaining image needs is gone. The model also knows who depends on what, so
an operation on something nothing depends on must succeed (a guard that
refuses everything fails too).

``make test`` runs 3 examples of 14 steps; ``make test-robust`` 8 of 30
(``HYPOTHESIS_PROFILE=robust``).
"""

import collections
import contextlib
import os
import shutil
import subprocess

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from salt.exceptions import CommandExecutionError

from tests.support import sandbox
from tests.support.images import CLUSTER, qemu_img, reads, spell, write_pattern

ROBUST = os.environ.get("HYPOTHESIS_PROFILE") == "robust"
SETTINGS = settings(
    max_examples=8 if ROBUST else 3,
    stateful_step_count=30 if ROBUST else 14,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not ROBUST,
    database=None,
    # a failing run against libvirt takes seconds per step: report the found case as it is
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
SPELLINGS = ["plain", "slashes", "dot", "symlink"]


class Image:
    def __init__(self, index, path, backing, pool=None, vol=None):
        self.index, self.path, self.backing = index, path, backing
        self.pool, self.vol = pool, vol
        self.offsets = {index * CLUSTER: index % 250 + 1}  # what this image itself holds
        self.alive, self.wiped = True, False


class DataSafety(RuleBasedStateMachine):
    """One example: a small host made by the rules below, torn down at the end."""

    env = None  # set by the test: {conn, kvm, kvm_state, loaders}
    seen = collections.Counter()  # what the search tried, over all examples

    def __init__(self):
        super().__init__()
        self.conn = self.env["conn"]
        self.kvm, self.kvm_state, self.loaders = (
            self.env["kvm"],
            self.env["kvm_state"],
            self.env["loaders"],
        )
        self.top = sandbox.files_dir(sandbox.uid("ds-"))
        self.outside = os.path.join(self.top, "outside")
        os.makedirs(self.outside)
        self.pools = {}  # name -> {"path", "running", "alive"}
        for _ in range(3):
            pool, path = sandbox.make_dir_pool(self.conn)
            self.pools[pool.name()] = {"path": path, "running": True, "alive": True}
        self.images = []
        # name -> {"top": Image, "running", "snapshots": {name: (overlay Image, base Image)}}
        self.vms = {}
        self.counter = 0

    def teardown(self):
        for name in self.vms:
            sandbox.remove_vm(self.conn, name)
        for name, pool in self.pools.items():
            sandbox.drop_pool(self.conn, name)
            shutil.rmtree(pool["path"], ignore_errors=True)
        shutil.rmtree(self.top, ignore_errors=True)

    # --- the model: who depends on what -------------------------------------------------

    def alive(self):
        return [i for i in self.images if i.alive]

    def chain(self, image):
        out = []
        while image is not None:
            out.append(image)
            image = image.backing
        return out

    def known(self, image):
        """Whether the host knows ``image``: a volume of a pool, or in the chain of a VM's disk
        or of a snapshot. A file outside every pool that nothing references is invisible to
        libvirt and salt-kvm alike (the boundary docs/safety.rst states)."""
        if image.pool is not None:
            return True
        tops = [vm["top"] for vm in self.vms.values()] + [
            o for vm in self.vms.values() for o, _b in vm["snapshots"].values()
        ]
        return any(image in self.chain(top) for top in tops)

    def intact(self, image):
        return all(i.alive and not i.wiped for i in self.chain(image))

    def needs(self, image):
        """Why ``image``'s bytes are needed by something else (empty: nothing needs them)."""
        why = [f"vm {n}" for n, vm in self.vms.items() if vm["top"] is image]
        why += [
            f"snapshot {s} of {n}"
            for n, vm in self.vms.items()
            for s, (_o, base) in vm["snapshots"].items()
            if base is image
        ]
        why += [
            f"image {o.index}"
            for o in self.alive()
            if o is not image and image in self.chain(o)[1:] and self.known(o)
        ]
        return why

    def in_pool(self, image, pool):
        return os.path.realpath(os.path.dirname(image.path)) == os.path.realpath(
            self.pools[pool]["path"]
        )

    def refresh_states(self):
        # the state module's listings are per run: each call here is a run
        self.loaders.reset_state()

    # --- building ---------------------------------------------------------------------------

    def _new_index(self):
        self.counter += 1
        return self.counter

    def _write_own(self, image):
        """Write the image's own pattern; an image whose backing file a running VM holds
        cannot be opened for writing (QEMU's image locks): it then holds no pattern of its own."""
        try:
            write_pattern(image.path, image.index % 250 + 1, image.index * CLUSTER)
        except subprocess.CalledProcessError:
            image.offsets = {}
        self.images.append(image)

    def _spelled(self, image, how):
        return spell(image.path, how, self.top)

    @initialize(data=st.data(), how=st.sampled_from(SPELLINGS))
    def seed(self, data, how):
        """A base volume, an overlay on it (in any pool), and a VM on one of them:
        every destructive path has something to aim at from the first step."""
        self.new_volume(data, how, base=False)
        self.new_volume(data, how, base=True)
        self.new_vm(data, how, data.draw(st.booleans()))

    @rule(data=st.data(), how=st.sampled_from(SPELLINGS))
    def new_volume(self, data, how, base=None):
        running = [p for p, v in self.pools.items() if v["alive"] and v["running"]]
        if not running:
            return
        pool = data.draw(st.sampled_from(running))
        bases = [i for i in self.alive() if self.intact(i)]
        if base is False or not bases:
            base = None
        else:
            base = data.draw(st.sampled_from(bases if base else [None] + bases))
        index = self._new_index()
        vol = f"v{index}.qcow2"
        if base is None:
            self.kvm.volume_create(pool, vol, "16M")
        else:
            self.kvm.volume_create(pool, vol, backing=self._spelled(base, how))
        image = Image(index, os.path.join(self.pools[pool]["path"], vol), base, pool, vol)
        self._write_own(image)

    @precondition(lambda self: self.alive())
    @rule(data=st.data(), how=st.sampled_from(SPELLINGS))
    def new_outside_overlay(self, data, how):
        bases = [i for i in self.alive() if self.intact(i)]
        if not bases:
            return
        base = data.draw(st.sampled_from(bases))
        index = self._new_index()
        path = os.path.join(self.outside, f"o{index}.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", "-b", self._spelled(base, how), "-F", "qcow2", path)
        image = Image(index, path, base)
        self._write_own(image)

    @precondition(lambda self: self.alive() and len(self.vms) < 4)
    @rule(data=st.data(), how=st.sampled_from(SPELLINGS), start=st.booleans())
    def new_vm(self, data, how, start):
        tops = [i for i in self.alive() if self.intact(i)]
        if not tops or len(self.vms) >= 4:
            return
        top = data.draw(st.sampled_from(tops))
        dom, _ = sandbox.make_vm(self.conn, disk=self._spelled(top, how))
        self.vms[dom.name()] = {"top": top, "running": False, "snapshots": {}}
        if start:
            self._start(dom.name())

    def _start(self, name):
        with contextlib.suppress(
            Exception
        ):  # QEMU's image locks may refuse (another VM writes the image)
            self.conn.lookupByName(name).create()
            self.vms[name]["running"] = True

    @precondition(lambda self: self.vms)
    @rule(data=st.data())
    def toggle_vm(self, data):
        if not self.vms:
            return
        name = data.draw(st.sampled_from(sorted(self.vms)))
        if self.vms[name]["running"]:
            self.conn.lookupByName(name).destroy()
            self.vms[name]["running"] = False
        else:
            self._start(name)

    @rule(data=st.data())
    def toggle_pool(self, data):
        alive = [p for p, v in self.pools.items() if v["alive"]]
        if not alive:
            return
        name = data.draw(st.sampled_from(alive))
        if self.pools[name]["running"]:
            self.kvm.pool_stop(name)
        else:
            self.kvm.pool_start(name)
        self.pools[name]["running"] = not self.pools[name]["running"]

    @precondition(lambda self: any(not vm["running"] for vm in self.vms.values()))
    @rule(data=st.data())
    def external_snapshot(self, data):
        off = [n for n, vm in self.vms.items() if not vm["running"] and self.intact(vm["top"])]
        if not off:
            return
        name = data.draw(st.sampled_from(off))
        vm = self.vms[name]
        snap = f"s{self._new_index()}"
        made = self.kvm.snapshot_create(name, snap, memory=False, disk_only=True, external=True)
        path = made["disks"][0]["file"]
        index = self._new_index()
        overlay = Image(index, path, vm["top"])
        self._write_own(overlay)  # the guest's writes since
        vm["snapshots"][snap] = (overlay, vm["top"])
        vm["top"] = overlay

    # --- destroying, without force ----------------------------------------------------------------

    def _volumes(self):
        return [i for i in self.alive() if i.vol and self.pools[i.pool]["alive"]]

    @precondition(lambda self: self._volumes())
    @rule(data=st.data(), how=st.sampled_from(["exec", "state"]))
    def delete_volume(self, data, how):
        vols = self._volumes()
        if not vols:
            return
        image = data.draw(st.sampled_from(vols))
        running = self.pools[image.pool]["running"]
        needed = self.needs(image)
        if how == "exec":
            done = self._try(lambda: self.kvm.volume_delete(image.pool, image.vol))
        else:
            self.refresh_states()
            predicted = self.kvm_state.volume_absent(image.vol, pool=image.pool, test=True)
            self.refresh_states()
            ret = self.kvm_state.volume_absent(image.vol, pool=image.pool)
            done = ret["result"] is True and bool(ret["changes"])
            if running:
                assert (predicted["result"] is None) == done, (predicted, ret)
        self.seen[
            f"delete ({how}): {'done' if done else 'not done'}, "
            f"{'needed' if needed else 'unneeded'}"
        ] += 1
        if running and not needed:
            assert done, f"deleting image {image.index} (nothing needs it) was refused"
        if done:
            assert not needed, f"deleted image {image.index} that {needed} need(s)"
            image.alive = False

    @precondition(lambda self: self._volumes())
    @rule(data=st.data())
    def wipe_volume(self, data):
        vols = [i for i in self._volumes() if not i.wiped]
        if not vols:
            return
        image = data.draw(st.sampled_from(vols))
        needed = self.needs(image)
        done = self._try(lambda: self.kvm.volume_wipe(image.pool, image.vol))
        self.seen[
            f"wipe: {'done' if done else 'not done'}, {'needed' if needed else 'unneeded'}"
        ] += 1
        if self.pools[image.pool]["running"] and not needed:
            assert done, f"wiping image {image.index} (nothing needs it) was refused"
        if done:
            assert not needed, f"wiped image {image.index} that {needed} need(s)"
            image.wiped = True

    @rule(data=st.data(), how=st.sampled_from(["exec", "state"]))
    def purge_pool(self, data, how):
        alive = [p for p, v in self.pools.items() if v["alive"]]
        if not alive:
            return
        pool = data.draw(st.sampled_from(alive))
        inside = [i for i in self.alive() if self.in_pool(i, pool)]
        needed = [
            w
            for i in inside
            for w in self.needs(i)
            if not (w.startswith("image ") and any(f"image {j.index}" == w for j in inside))
        ]
        if how == "exec":
            done = self._try(lambda: self.kvm.pool_delete(pool))
        else:
            self.refresh_states()
            ret = self.kvm_state.pool_absent(pool, purge=True)
            done = ret["result"] is True
        self.seen[
            f"purge ({how}): {'done' if done else 'not done'}, {'needed' if needed else 'unneeded'}"
        ] += 1
        if not needed:
            assert done, f"purging pool {pool} (nothing outside needs it) was refused"
        if done:
            assert not needed, f"purged pool {pool} whose images {needed} need"
            self.pools[pool]["alive"] = False
            for image in inside:
                image.alive = False

    @precondition(lambda self: any(vm["snapshots"] for vm in self.vms.values()))
    @rule(data=st.data())
    def delete_snapshot(self, data):
        with_snaps = [n for n, vm in self.vms.items() if vm["snapshots"]]
        if not with_snaps:
            return
        name = data.draw(st.sampled_from(sorted(with_snaps)))
        vm = self.vms[name]
        snap = data.draw(st.sampled_from(sorted(vm["snapshots"])))
        overlay, base = vm["snapshots"][snap]
        mine = (
            {f"image {i.index}" for i in self.chain(vm["top"])}
            | {f"snapshot {s} of {name}" for s in vm["snapshots"]}
            | {f"vm {name}"}
        )
        others = [w for w in self.needs(base) if w not in mine]
        done = self._try(lambda: self.kvm.snapshot_delete(name, snap))
        self.seen[
            f"merge: {'done' if done else 'not done'}, {'needed' if others else 'unneeded'}"
        ] += 1
        if not done:
            return
        merged = overlay.alive and not os.path.exists(overlay.path)
        assert not (merged and others), (
            f"merged snapshot {snap} of {name} into image {base.index}, which {others} build(s) on"
        )
        # merged: the base now holds the overlay's data, and the VM's own images that were built on
        # the overlay (its disk, its later snapshots' overlays) are rebased onto the base by the
        # merge. Anything else built on the overlay keeps naming it: a known image makes the merge
        # refused (above); an unknown one (outside every pool, unreferenced) is past the boundary.
        own = {id(i) for i in self.chain(vm["top"])} | {id(o) for o, _b in vm["snapshots"].values()}
        del vm["snapshots"][snap]
        if merged:
            base.offsets.update(overlay.offsets)
            overlay.alive = False
            for image in self.images:
                if image.backing is overlay and id(image) in own:
                    image.backing = base
            for other in self.vms.values():
                if other["top"] is overlay:
                    other["top"] = base

    def _try(self, call):
        """True when the call went through; False when it was refused or failed (no traceback)."""
        try:
            call()
        except CommandExecutionError as exc:
            assert "Traceback" not in str(exc)
            return False
        return True

    # --- the invariant --------------------------------------------------------------------------

    @precondition(lambda self: self.images)
    @invariant()
    def every_remaining_image_reads_what_it_was_built_from(self):
        known = {o for i in self.images for o in i.offsets}
        for image in self.alive():
            if image.wiped or not self.known(image) and not self.intact(image):
                continue  # an unreferenced file outside every pool: nothing on the host knows it
            expected = {o: 0 for o in known}
            for below in reversed(self.chain(image)):
                assert below.alive and not below.wiped, (
                    f"image {image.index} needs image {below.index}, which is gone or wiped"
                )
                expected.update(below.offsets)
            ok, out = reads(image.path, expected)
            assert ok, (
                f"image {image.index} ({image.path}) does not read what it was built from:\n{out}"
            )


def test_no_destructive_operation_loses_data_a_vm_or_an_image_needs(conn, kvm, kvm_state, loaders):
    DataSafety.env = {"conn": conn, "kvm": kvm, "kvm_state": kvm_state, "loaders": loaders}
    DataSafety.seen.clear()
    try:
        run_state_machine_as_test(DataSafety, settings=SETTINGS)
    finally:
        DataSafety.env = None
    print("the search tried:", dict(sorted(DataSafety.seen.items())))
    # a search that never aimed at data something needs would prove nothing
    aimed = sum(n for what, n in DataSafety.seen.items() if what.endswith(", needed"))
    assert aimed >= 3, (
        f"the search aimed at needed data only {aimed} times: {dict(DataSafety.seen)}"
    )
