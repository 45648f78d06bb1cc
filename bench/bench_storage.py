"""Storage no-op apply vs the libvirt floor, in one process.

``python bench/bench_storage.py [--pools 10] [--vols 20] [--reps 5]`` makes
``kvt-`` dir pools with qcow2 volumes, then times, best of ``reps``:

* **salt-kvm**: ``pool_present`` + ``volume_present`` of every object through
  the library with a fresh :class:`~salt_kvm.conn.Session` (what one
  ``state.apply kvm.storage`` does after Salt has loaded), all no-ops;
* **floor**: ``listAllStoragePools`` + ``listAllVolumes`` + XML parse of every
  pool and volume, and the comparison, on one connection.

It prints one JSON line with both times, the ratio, and the libvirt
connection calls of the no-op run (one pool listing is the design). The
whole-process comparison with ``salt-call`` and with saltext-virt's
``virt.pool_running`` / ``virt.volume_defined`` is ``bench/run.py --only storage``.
Everything it makes is removed at the end.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from salt_kvm import storage, storage_volumes  # noqa: E402
from salt_kvm.conn import Session  # noqa: E402
from tests.support import sandbox  # noqa: E402

SIZE = 1024**2


def _declared(pools, vols):
    return {
        name: {
            "target": os.path.join(sandbox.FILES_ROOT, name),
            "volumes": [f"v{j:03d}.qcow2" for j in range(vols)],
        }
        for name in pools
    }


def salt_kvm_noop(spec):
    session = Session(count_calls=True)
    changed = 0
    for name, want in spec.items():
        ret = storage.pool_present(session, name, type="dir", target=want["target"], autostart=True)
        changed += bool(ret["changes"]) or not ret["result"]
        for vname in want["volumes"]:
            ret = storage_volumes.volume_present(
                session, vname, pool=name, size=SIZE, format="qcow2"
            )
            changed += bool(ret["changes"]) or not ret["result"]
    calls = dict(session.calls)
    session.close()
    return changed, calls


def floor(spec):
    import libvirt  # pylint: disable=import-outside-toplevel
    from lxml import etree  # pylint: disable=import-outside-toplevel

    conn = sandbox.connect()
    diffs = 0
    for pool in conn.listAllStoragePools(0):
        want = spec.get(pool.name())
        if want is None:
            continue
        root = etree.fromstring(pool.XMLDesc(0))
        if (
            root.get("type") != "dir"
            or root.findtext("target/path") != want["target"]
            or not pool.isActive()
            or not pool.autostart()
        ):
            diffs += 1
        have = {}
        for vol in pool.listAllVolumes(0):
            vroot = etree.fromstring(vol.XMLDesc(0))
            have[vroot.findtext("name")] = (
                int(vroot.findtext("capacity")),
                vroot.find("target/format").get("type"),
            )
        diffs += sum(have.get(v) != (SIZE, "qcow2") for v in want["volumes"])
    conn.close()
    del libvirt
    return diffs


def best(func, reps):
    times, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--vols", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    names = [sandbox.uid("bs-") for _ in range(args.pools)]
    spec = _declared(names, args.vols)
    try:
        setup = Session()
        for name, want in spec.items():
            assert storage.pool_present(
                setup, name, type="dir", target=want["target"], autostart=True
            )["result"]
            for vname in want["volumes"]:
                ret = storage_volumes.volume_present(
                    setup, vname, pool=name, size=SIZE, format="qcow2"
                )
                assert ret["result"], ret["comment"]
        setup.close()
        ours, (changed, calls) = best(lambda: salt_kvm_noop(spec), args.reps)
        base, diffs = best(lambda: floor(spec), args.reps)
        assert changed == 0 and diffs == 0, (changed, diffs)
        print(
            json.dumps(
                {
                    "objects": args.pools * (args.vols + 1),
                    "salt_kvm_noop_s": round(ours, 4),
                    "floor_s": round(base, 4),
                    "ratio": round(ours / base, 2) if base else None,
                    "connection_calls": calls,
                }
            )
        )
    finally:
        conn = sandbox.connect()
        import libvirt  # pylint: disable=import-outside-toplevel

        for name in names:
            with contextlib.suppress(libvirt.libvirtError):
                pool = conn.storagePoolLookupByName(name)
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
            shutil.rmtree(os.path.join(sandbox.FILES_ROOT, name), ignore_errors=True)
        conn.close()


if __name__ == "__main__":
    main()
