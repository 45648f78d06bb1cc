"""The performance design, guarded by counting (never by timing).

A no-op ``state.apply`` runs every state against one shared session: one
listing per object kind per run (``session.memo``), no rescans per state. So
the libvirt calls of a no-op apply of N volumes grow linearly with N, and the
listings (``listAllStoragePools``, ``listAllVolumes``) are made once per run
(per pool), not once per state. The calls are counted through a proxy on the
connection that also wraps the pools, volumes and domains it hands out.

The figures themselves (wall time, CPU, memory) are measured by ``bench/run.py``.
"""

import collections
import contextlib
import shutil

import pytest

from salt_kvm import conn as kconn
from tests.support import sandbox

libvirt = pytest.importorskip("libvirt")

#: the sizes compared: pools of 5, 10 and 20 volumes
SIZES = (5, 10, 20)
_WRAP = (
    libvirt.virStoragePool,
    libvirt.virStorageVol,
    libvirt.virDomain,
    libvirt.virDomainSnapshot,
    libvirt.virNetwork,
    libvirt.virSecret,
)


class Counted:
    """Counts calls by ``Class.method`` on the wrapped libvirt object and on the
    libvirt objects its calls return. Calls on pools outside ``mine`` (the
    machine's or other tests' pools, which come and go) are counted apart."""

    def __init__(self, obj, counter, foreign, mine):
        self._obj, self._counter, self._foreign, self._mine = obj, counter, foreign, mine
        self._key = type(obj).__name__
        self._outside = isinstance(obj, libvirt.virStoragePool) and obj.name() not in mine

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            (self._foreign if self._outside else self._counter)[f"{self._key}.{name}"] += 1
            args = [a._obj if isinstance(a, Counted) else a for a in args]
            return self._wrap(attr(*args, **kwargs))

        return call

    def _wrap(self, value):
        if isinstance(value, _WRAP):
            return Counted(value, self._counter, self._foreign, self._mine)
        if isinstance(value, list) and value and isinstance(value[0], _WRAP):
            return [Counted(v, self._counter, self._foreign, self._mine) for v in value]
        return value


class CountingSession(kconn.Session):
    def __init__(self, mine):
        super().__init__(sandbox.URI)
        self.counter = collections.Counter()
        self.foreign = collections.Counter()
        self.mine = mine

    def _open(self):
        return Counted(super()._open(), self.counter, self.foreign, self.mine)


def _spec(pool, target, n):
    return {
        "pool": (pool, {"type": "dir", "target": target, "autostart": True}),
        "volumes": [
            (f"v{i:02d}.qcow2", {"pool": pool, "size": "1M", "format": "qcow2"}) for i in range(n)
        ],
    }


def _apply(kvm_state, spec, test=False):
    name, args = spec["pool"]
    rets = [kvm_state.pool_present(name, test=test, **args)]
    rets.extend(
        kvm_state.volume_present(vname, test=test, **vargs) for vname, vargs in spec["volumes"]
    )
    return rets


@pytest.fixture(scope="module")
def hosts(conn):
    """Three converged dir pools (5, 10 and 20 qcow2 volumes), made by the states themselves."""
    made = []
    try:
        for _ in SIZES:
            name = sandbox.uid("pd-")
            made.append((name, sandbox.files_dir(name)))
        yield {n: _spec(name, path, n) for n, (name, path) in zip(SIZES, made)}
    finally:
        for name, path in made:
            with contextlib.suppress(libvirt.libvirtError):
                pool = conn.storagePoolLookupByName(name)
                if pool.isActive():
                    for vol in pool.listAllVolumes(0):
                        with contextlib.suppress(libvirt.libvirtError):
                            vol.delete(0)
                    pool.destroy()
                pool.undefine()
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def counted(hosts):
    """``counted(spec, test)`` -> (state returns, calls by method): one no-op run
    with a fresh counting session, through the library functions the ``kvm``
    states call (the functional loader's ``state.single`` path gives every state
    a ``__context__`` of its own, so a session cannot be put in there)."""
    from salt_kvm import storage, storage_volumes  # pylint: disable=import-outside-toplevel

    mine = {spec["pool"][0] for spec in hosts.values()}

    def run(spec, test=False):
        session = CountingSession(mine)
        try:
            name, args = spec["pool"]
            rets = [storage.pool_present(session, name, test=test, **args)]
            rets.extend(
                storage_volumes.volume_present(session, vname, test=test, **vargs)
                for vname, vargs in spec["volumes"]
            )
            return rets, session.counter
        finally:
            session.close()

    return run


def test_noop_libvirt_calls_grow_linearly_with_volumes(kvm_state, hosts, counted, testmode):
    for spec in hosts.values():  # converge (the first apply; not counted)
        first = _apply(kvm_state, spec)
        assert all(r["result"] is True for r in first), [
            r["comment"] for r in first if r["result"] is not True
        ]

    calls = {}
    for n, spec in hosts.items():
        rets, counter = counted(spec, test=testmode)
        assert all(r["result"] is True and not r["changes"] for r in rets), [
            (r["name"], r["comment"]) for r in rets if r["result"] is not True or r["changes"]
        ]
        # one listing per kind per run, shared by all states: not one per state
        assert counter["virConnect.listAllStoragePools"] == 1, counter
        assert counter["virStoragePool.listAllVolumes"] == 1, counter
        assert (
            counter["virConnect.storagePoolLookupByName"] == 0
            and counter["virStoragePool.storageVolLookupByName"] == 0
        ), counter
        calls[n] = counter

    totals = {n: sum(c.values()) for n, c in calls.items()}
    small, mid, large = SIZES
    per_volume_low = (totals[mid] - totals[small]) / (mid - small)
    per_volume_high = (totals[large] - totals[mid]) / (large - mid)
    # linear: the marginal cost of a volume is the same at 5->10 and 10->20 volumes
    # (a rescan per state would make it grow with the pool: quadratic)
    assert per_volume_high == pytest.approx(per_volume_low, abs=0.5), totals
    assert per_volume_high <= 4, f"{per_volume_high} libvirt calls per volume: {dict(calls[large])}"
    # calls that do not depend on N stay fixed
    fixed = {n: totals[n] - per_volume_high * n for n in SIZES}
    assert max(fixed.values()) - min(fixed.values()) <= 2, (totals, fixed)
