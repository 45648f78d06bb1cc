"""In-process counters: where the time of an apply goes.

``python bench/counters.py CONFIG_DIR PILLAR.json [--test]`` loads the real
``kvm`` state module through Salt's loader (as ``salt-call`` does), puts a
counting :class:`~salt_kvm.conn.Session` into ``__context__``, renders each
formula part from the pillar and runs its states in order, once. It prints one
JSON object: wall time per part and per state function, libvirt calls by
``Class.method`` (calls on pools, volumes and domains included, not only on
the connection), how often each listing was loaded (``session.memo`` misses)
and the results of the states. ``run.py`` runs it under ``ip netns exec`` when
bridges are part of the run.
"""

import collections
import json
import sys
import time

from salt_kvm import conn as kconn

try:
    import libvirt

    _WRAP = tuple(
        getattr(libvirt, n)
        for n in (
            "virStoragePool",
            "virStorageVol",
            "virDomain",
            "virDomainSnapshot",
            "virNetwork",
            "virSecret",
            "virInterface",
            "virNodeDevice",
        )
        if hasattr(libvirt, n)
    )
except ImportError:  # pragma: no cover
    libvirt = None
    _WRAP = ()


class DeepCounter:
    """A proxy that counts calls by ``Class.method`` on the connection and on
    every libvirt object it hands out (pools, volumes, domains, ...)."""

    __slots__ = ("_obj", "_counter", "_cls")

    def __init__(self, obj, counter):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_counter", counter)
        object.__setattr__(self, "_cls", type(obj).__name__)

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr
        counter, key = self._counter, f"{self._cls}.{name}"

        def call(*args, **kwargs):
            counter[key] += 1
            args = [a._obj if isinstance(a, DeepCounter) else a for a in args]
            return _wrap(attr(*args, **kwargs), counter)

        return call

    def __eq__(self, other):
        return self._obj == (other._obj if isinstance(other, DeepCounter) else other)

    def __hash__(self):
        return hash(self._obj)


def _wrap(value, counter):
    if _WRAP and isinstance(value, _WRAP):
        return DeepCounter(value, counter)
    if isinstance(value, list) and value and _WRAP and isinstance(value[0], _WRAP):
        return [DeepCounter(v, counter) for v in value]
    return value


class CountingSession(kconn.Session):
    """A session whose connection counts every libvirt call, and whose
    ``memo`` counts listing loads (misses) by key prefix."""

    def __init__(self, uri=kconn.DEFAULT_URI):
        super().__init__(uri)
        self.libvirt_calls = collections.Counter()
        self.loads = collections.Counter()

    def _open(self):
        return DeepCounter(super()._open(), self.libvirt_calls)

    def memo(self, key, loader):
        if key not in self.cache:
            self.loads[":".join(str(key).split(":")[:2])] += 1
        return super().memo(key, loader)


def _state_calls(rendered):
    """``[(state_id, "kvm.func", kwargs)]`` from formula output, in order."""
    out = []
    for sid, body in rendered.items():
        ((func, args),) = body.items()
        kwargs = {}
        for arg in args:
            for key, value in arg.items():
                if key not in ("require", "watch", "onchanges"):
                    kwargs[key] = value
        out.append((sid, func, kwargs))
    return out


def run(
    config_dir, pillar, test=False, parts=("bridges", "networks", "storage", "vms", "snapshots")
):
    import salt.config
    import salt.loader

    from salt_kvm import formula

    t0 = time.perf_counter()
    opts = salt.config.minion_config(f"{config_dir}/minion")
    opts["test"] = test
    opts["grains"] = {}
    opts["pillar"] = {"kvm": pillar}
    session = CountingSession()
    context = {kconn.CONTEXT_KEY: session}
    utils = salt.loader.utils(opts, context=context)
    funcs = salt.loader.minion_mods(opts, utils=utils, context=context)
    states = salt.loader.states(opts, funcs, utils, {}, context=context)
    import salt.utils.schedule  # noqa: F401  pylint: disable=unused-import  (salt-call has it imported before any state runs; importing croniter runs `file -b`)

    load_s = time.perf_counter() - t0

    spawned = []

    def audit(event, args):
        if event == "subprocess.Popen" and recording:
            import traceback  # pylint: disable=import-outside-toplevel

            frames = [
                f
                for f in traceback.extract_stack()[:-1]
                if not f.filename.endswith(("subprocess.py", "counters.py"))
            ]
            where = " <- ".join(
                f.filename.rsplit("site-packages/", 1)[-1].rsplit("/work/main/", 1)[-1]
                + f":{f.lineno}"
                for f in frames[-4:][::-1]
            )
            spawned.append(
                " ".join(str(a) for a in (args[1] or [args[0]]))[:100] + f" (from {where})"
            )

    recording = False
    sys.addaudithook(audit)
    report = {
        "loader_s": round(load_s, 3),
        "parts": {},
        "functions": {},
        "results": collections.Counter(),
        "changed": 0,
    }
    for part in parts:
        t = time.perf_counter()
        rendered = formula.render(part, pillar)
        render_s = time.perf_counter() - t
        calls = _state_calls(rendered)
        t = time.perf_counter()
        recording = True
        for _sid, func, kwargs in calls:
            ts = time.perf_counter()
            ret = states[func](**kwargs)
            fn = report["functions"].setdefault(func, {"n": 0, "s": 0.0})
            fn["n"] += 1
            fn["s"] += time.perf_counter() - ts
            report["results"][str(ret.get("result"))] += 1
            report["changed"] += bool(ret.get("changes"))
        recording = False
        report["parts"][part] = {
            "states": len(calls),
            "render_s": round(render_s, 4),
            "states_s": round(time.perf_counter() - t, 4),
        }
    for fn in report["functions"].values():
        fn["s"] = round(fn["s"], 4)
        fn["ms_per_state"] = round(1000 * fn["s"] / fn["n"], 3) if fn["n"] else 0
    report["libvirt_calls"] = dict(sorted(session.libvirt_calls.items()))
    report["libvirt_calls_total"] = sum(session.libvirt_calls.values())
    report["listing_loads"] = dict(session.loads)
    report["results"] = dict(report["results"])
    report["subprocesses"] = spawned
    session.close()
    return report


def main(argv):
    config_dir, pillar_file = argv[1], argv[2]
    test = "--test" in argv
    with open(pillar_file, encoding="utf-8") as fh:
        pillar = json.load(fh)
    keys = {
        "bridges": "bridges",
        "networks": "networks",
        "storage": "pools",
        "vms": "vms",
        "snapshots": "snapshots",
    }
    parts = [part for part, key in keys.items() if key in pillar]
    print(json.dumps(run(config_dir, pillar, test=test, parts=parts)))


if __name__ == "__main__":
    main(sys.argv)
