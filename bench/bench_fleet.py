#!/usr/bin/env python3
"""How the cost of ``salt '*' state.apply kvm`` grows with the fleet.

One salt-master and 1, then 5, then 20 minions on this machine, each minion in
its own network namespace, reaching the master over a veth link
(198.51.100.192/26), as in the fleet integration tests
(:mod:`tests.support.fleet`). Each minion's pillar holds its own dir pool with
``--volumes`` qcow2 volumes and a bridge (in its namespace). For each fleet
size it measures, with the ``salt`` CLI as an operator runs it:

* the first apply (everything created), then ``--reps`` no-op applies (median);
* the peak memory of each minion: the largest proportional set size (PSS) of
  the minion process plus the job processes it forks, sampled every 250 ms
  during the applies (median and max over the minions), and the minion
  process's own peak RSS (the kernel's VmHWM).

Run from the repository root, as root::

    .venv/bin/python bench/bench_fleet.py                 # 1, 5, 20 minions
    .venv/bin/python bench/bench_fleet.py --sizes 1,5 --reps 3

Results go to ``bench/results/fleet.json`` and ``fleet.md``. Every ``kvt-``
object it made is removed at the end, also when it fails.

It runs inside pytest (pytest-salt-factories starts the daemons); this file
is both the script and its own test module.
"""

import json
import os
import pathlib
import statistics
import sys
import threading
import time

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: set by main() for the pytest session it starts (the test module is imported anew there)
OPTIONS_ENV = "KVT_BENCH_FLEET"


def _options():
    opts = {"sizes": [1, 5, 20], "reps": 3, "volumes": 5}
    opts.update(json.loads(os.environ.get(OPTIONS_ENV) or "{}"))
    return opts


def _hwm(pid):
    """The kernel's peak resident set (VmHWM) of a process, in bytes."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak proportional set size (PSS: shared pages split between the processes
    sharing them) of each minion's process tree: the minion and the job
    processes it forks, sampled in the background."""

    def __init__(self, pids, interval=0.25):
        super().__init__(daemon=True)
        self.pids = dict(pids)  # minion id -> pid
        self.interval = interval
        self.peak = {m: 0 for m in self.pids}
        self._halt = threading.Event()

    def run(self):
        import psutil  # pylint: disable=import-outside-toplevel

        procs = {}
        for minion, pid in self.pids.items():
            try:
                procs[minion] = psutil.Process(pid)
            except psutil.Error:
                continue
        while not self._halt.is_set():
            for minion, proc in procs.items():
                total = 0
                try:
                    for one in [proc] + proc.children(recursive=True):
                        try:
                            total += one.memory_full_info().pss
                        except psutil.Error:
                            pass
                except psutil.Error:
                    continue
                self.peak[minion] = max(self.peak[minion], total)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()
        return self.peak


@pytest.fixture(scope="session")
def salt_factories_config():
    return {"code_dir": str(REPO), "inject_sitecustomize": False, "start_timeout": 120}


def _pillar(prefix, round_tag, index, volumes):
    from tests.support import sandbox  # pylint: disable=import-outside-toplevel

    pool = f"{prefix}-{round_tag}p{index}"
    return {
        "kvm": {
            "bridges": {
                f"kvt-b{round_tag}x{index}": {"stp": False, "forward_delay": 0, "persist": "none"}
            },
            "pools": {
                pool: {
                    "type": "dir",
                    "target": os.path.join(sandbox.FILES_ROOT, pool),
                    "volumes": {
                        f"v{j}.qcow2": {"size": "16M", "format": "qcow2"} for j in range(volumes)
                    },
                }
            },
        }
    }


def _apply(cli, ids):
    start = time.monotonic()
    ret = cli.run("-L", "state.apply", "kvm", minion_tgt=",".join(ids))
    wall = time.monotonic() - start
    data = ret.data if isinstance(ret.data, dict) else {}
    if len(ids) == 1 and ids[0] not in data:  # salt-factories unwraps a single minion's return
        data = {ids[0]: data}
    ok = ret.returncode == 0 and set(data) == set(ids)
    changed = sum(
        1
        for m in data.values()
        if isinstance(m, dict)
        for r in m.values()
        if isinstance(r, dict) and r.get("changes")
    )
    # time spent in the states themselves (Salt's per-state duration, ms), the slowest minion
    state_s = max(
        (
            sum(r.get("duration", 0) for r in m.values() if isinstance(r, dict)) / 1000
            for m in data.values()
            if isinstance(m, dict)
        ),
        default=0,
    )
    return wall, ok, changed, ret, state_s


def _write_results(results):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# salt '*' state.apply kvm across a fleet on one machine",
        "",
        f"{results['machine']}; each minion: 1 dir pool, {results['volumes']} qcow2 volumes, 1 "
        "bridge in its netns.",
        (
            "Wall time of the `salt` CLI (publish, all minions apply, all returns back); no-op "
            "is the median of "
            f"{results['reps']} runs. Memory per minion: peak PSS of the minion and its job "
            "processes, sampled every 250 ms "
            "during the applies (median and max over the minions), and the minion process's own "
            "peak RSS (VmHWM, median)."
        ),
        "",
        "The state columns are the time inside the states (Salt's per-state durations) on the "
        "slowest minion.",
        "",
        "Load is the machine's 1-minute load average before and after the runs (other work skews "
        "wall times).",
        "",
        "| minions | first apply (s) | of which states (s) | no-op apply (s) | of which states "
        "(s) | peak PSS per minion, median (MiB) | max (MiB) | minion peak RSS (MiB) | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['minions']} | {row['first_s']:.2f} | {row['first_states_s']:.2f} | "
            f"{row['noop_s']:.2f} | {row['noop_states_s']:.2f} "
            f"| {row['pss_median_mib']:.0f} | {row['pss_max_mib']:.0f} | "
            f"{row['hwm_median_mib']:.0f} "
            f"| {row.get('load_before', 0):.1f} / {row.get('load_after', 0):.1f} |"
        )
    (RESULTS / "fleet.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def test_bench_fleet(salt_factories):  # pylint: disable=too-many-locals
    from tests.support import fleet as fleetlib  # pylint: disable=import-outside-toplevel
    from tests.support import sandbox  # pylint: disable=import-outside-toplevel

    opts = _options()
    sizes, reps, volumes = opts["sizes"], opts["reps"], opts["volumes"]
    net = fleetlib.FleetNet.free((("198.51.100", 192), ("198.51.100", 128)))
    net.create()
    minions, rows = [], []
    pillar_tree = pathlib.Path(salt_factories.root_dir) / f"{net.prefix}-pillar"
    pillar_tree.mkdir(parents=True, exist_ok=True)
    (pillar_tree / "top.sls").write_text("base: {}\n")
    try:
        master = salt_factories.salt_master_daemon(
            f"{net.prefix}-master",
            overrides={
                "interface": net.master_ip,
                "file_roots": {"base": [str(REPO)]},
                "pillar_roots": {"base": [str(pillar_tree)]},
                "file_ignore_regex": [r"/\.venv/", r"/\.git/", r"/build/", r"/\.notes/"],
                "open_mode": True,
                "auto_accept": True,
                "worker_threads": 8,
            },
        )
        with master.started():
            cli = master.salt_cli(timeout=900)
            for round_no, size in enumerate(sizes, start=1):
                while len(minions) < size:
                    netns, _addr = net.add_host()
                    factory = master.salt_minion_daemon(
                        f"{net.prefix}-hv{len(minions) + 1}",
                        factory_class=fleetlib.NetnsMinion,
                        netns=netns,
                        # 20 minions on 2 shared cores: give the master time to answer
                        overrides=dict(
                            net.minion_overrides(master),
                            request_channel_timeout=120,
                            request_channel_tries=5,
                        ),
                    )
                    factory.start()
                    minions.append(factory)
                ids = [m.id for m in minions]
                top = {"base": {}}
                for i, minion_id in enumerate(ids, start=1):
                    sls = f"bench_{i}"
                    top["base"][minion_id] = [sls]
                    (pillar_tree / f"{sls}.sls").write_text(
                        yaml.safe_dump(_pillar(net.prefix, f"r{round_no}", i, volumes))
                    )
                (pillar_tree / "top.sls").write_text(yaml.safe_dump(top))
                cli.run("-L", "saltutil.refresh_pillar", "wait=True", minion_tgt=",".join(ids))
                load_before = os.getloadavg()[0]
                pids = {m.id: m.pid for m in minions}
                sampler = MemorySampler(pids)
                sampler.start()
                first, ok, changed, ret, first_states = _apply(cli, ids)
                assert ok, ret
                assert changed >= size * (volumes + 2), ret
                noops, noop_states = [], []
                for _ in range(reps):
                    wall, ok, changed, ret, states = _apply(cli, ids)
                    assert ok and changed == 0, ret
                    noops.append(wall)
                    noop_states.append(states)
                peaks = sampler.stop()
                mib = sorted(v / 2**20 for v in peaks.values())
                hwm = sorted(_hwm(m.pid) / 2**20 for m in minions)
                rows.append(
                    {
                        "minions": size,
                        "first_s": round(first, 3),
                        "noop_s": round(statistics.median(noops), 3),
                        "noop_runs_s": [round(x, 3) for x in noops],
                        "first_states_s": round(first_states, 3),
                        "noop_states_s": round(statistics.median(noop_states), 3),
                        "pss_median_mib": round(statistics.median(mib), 1),
                        "pss_max_mib": round(max(mib), 1),
                        "hwm_median_mib": round(statistics.median(hwm), 1),
                        # other work on the machine skews wall times: the 1-minute load average
                        # around the runs
                        "load_before": round(load_before, 2),
                        "load_after": round(os.getloadavg()[0], 2),
                    }
                )
                print(
                    f"{size} minion(s): first {first:.2f}s, no-op "
                    f"{statistics.median(noops):.2f}s, pss {statistics.median(mib):.0f} MiB, "
                    f"minion process peak RSS {statistics.median(hwm):.0f} MiB"
                )
                fleetlib.remove_objects(f"{net.prefix}-r{round_no}")  # this round's pools and files
            for factory in minions:
                factory.terminate()
    finally:
        for factory in minions:
            try:
                factory.terminate()
            except Exception:  # noqa: BLE001  pylint: disable=broad-except
                print(f"could not stop {factory.id}", file=sys.stderr)
        net.remove()
        sandbox.sweep(only_mine=True)
        import shutil  # pylint: disable=import-outside-toplevel

        for path in [
            pillar_tree,
            pathlib.Path(salt_factories.root_dir) / f"{net.prefix}-master",
        ] + [
            pathlib.Path(salt_factories.root_dir) / f"{net.prefix}-hv{i}"
            for i in range(1, len(minions) + 1)
        ]:
            shutil.rmtree(path, ignore_errors=True)
    import platform  # pylint: disable=import-outside-toplevel

    _write_results(
        {
            "machine": (
                f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
            ),
            "reps": reps,
            "volumes": volumes,
            "rows": rows,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )


def main(argv=None):
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--sizes", default="1,5,20", help="fleet sizes, comma-separated (default 1,5,20)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="no-op applies per size (median reported)"
    )
    parser.add_argument("--volumes", type=int, default=5, help="qcow2 volumes per minion")
    args = parser.parse_args(argv)
    os.environ[OPTIONS_ENV] = json.dumps(
        {
            "sizes": [int(s) for s in args.sizes.split(",")],
            "reps": args.reps,
            "volumes": args.volumes,
        }
    )
    return pytest.main(
        [
            __file__,
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:logging",
            "--tb=short",
            "--show-capture=no",
            "--rootdir",
            str(REPO / "bench"),
            "-o",
            "addopts=",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
