#!/usr/bin/env python3
"""No-op apply of 50 bridges x 2 ports against the pyroute2 floor, in one process.

Run from the repository root, as root::

    .venv/bin/python bench/bench_bridges.py [--bridges 50] [--reps 7]

Builds a ``kvt-`` network namespace holding ``--bridges`` bridges with two
veth ports each (the far ends sit in a second namespace), applies them once
with :func:`salt_kvm.bridge.bridge_present`, then times:

* **salt-kvm**: one "run" = a fresh session and one ``bridge_present`` per
  bridge, all no-ops (the session memoises one netlink dump for the run);
* **floor**: the least pyroute2 work that answers the same question: one
  ``get_links`` dump in the namespace and a compare of each bridge's STP,
  forward delay and port set.

Also times the **first apply** (every bridge created, one session) and
counts the full namespace dumps (``bridge_netlink.load``) each phase made:
a run should load the dump once, however many bridges it changes.

Prints the medians and their ratio. Everything is removed at the end.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from salt_kvm import bridge, conn  # noqa: E402  pylint: disable=wrong-import-position
from salt_kvm import bridge_netlink as nl  # noqa: E402  pylint: disable=wrong-import-position
from tests.support import sandbox  # noqa: E402  pylint: disable=wrong-import-position


def build(host, far, count):
    from pyroute2 import NetNS  # pylint: disable=import-outside-toplevel

    with NetNS(far, flags=os.O_CREAT):
        pass
    specs = {}
    with NetNS(host, flags=os.O_CREAT) as ns:
        for i in range(count):
            ports = [f"p{i}a", f"p{i}b"]
            for port in ports:
                ns.link(
                    "add", ifname=port, kind="veth", peer={"ifname": f"x{port}", "net_ns_fd": far}
                )
            specs[f"br{i}"] = {"ports": ports, "stp": False, "forward_delay": 0}
    return specs


def salt_kvm_run(host, specs):
    session = conn.Session()
    for name, spec in specs.items():
        ret = bridge.bridge_present(session, name, netns=host, **spec)
        assert ret["result"] is True and not ret["changes"], ret
    session.close()


def floor_run(host, specs):
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    with IPRoute(netns=host, flags=0) as ipr:
        links = ipr.get_links()
    byindex = {l["index"]: l.get_attr("IFLA_IFNAME") for l in links}
    ports, attrs = {}, {}
    for link in links:
        name = link.get_attr("IFLA_IFNAME")
        master = link.get_attr("IFLA_MASTER")
        if master:
            ports.setdefault(byindex[master], set()).add(name)
        info = link.get_attr("IFLA_LINKINFO")
        if info and info.get_attr("IFLA_INFO_KIND") == "bridge":
            data = info.get_attr("IFLA_INFO_DATA")
            attrs[name] = (
                bool(data.get_attr("IFLA_BR_STP_STATE")),
                data.get_attr("IFLA_BR_FORWARD_DELAY"),
            )
    diffs = 0
    for name, spec in specs.items():
        if attrs.get(name) != (spec["stp"], spec["forward_delay"] * 100) or ports.get(name) != set(
            spec["ports"]
        ):
            diffs += 1
    assert diffs == 0


LOADS = [0]


def _count_loads():
    real = nl.load

    def counting(netns=None):
        LOADS[0] += 1
        return real(netns)

    nl.load = counting


def timed(func, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridges", type=int, default=50)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    host, far = sandbox.uid("bh-"), sandbox.uid("bf-")
    _count_loads()
    try:
        specs = build(host, far, args.bridges)
        start = time.perf_counter()
        session = conn.Session()
        for name, spec in specs.items():
            ret = bridge.bridge_present(session, name, netns=host, **spec)
            assert ret["result"] is True, ret
        first = time.perf_counter() - start
        first_loads, LOADS[0] = LOADS[0], 0
        ours = timed(lambda: salt_kvm_run(host, specs), args.reps)
        noop_loads = LOADS[0] / args.reps
        floor = timed(lambda: floor_run(host, specs), args.reps)
        print(
            f"bridges: {args.bridges} x 2 ports, first apply {first * 1000:.1f} ms ({first_loads} namespace dumps)"
        )
        print(
            f"salt-kvm no-op apply: {ours * 1000:.1f} ms (median of {args.reps}; {noop_loads:g} namespace dumps per run)"
        )
        print(f"pyroute2 floor (one dump + compare): {floor * 1000:.1f} ms (median of {args.reps})")
        print(f"ratio: {ours / floor:.1f}x")
    finally:
        from pyroute2 import netns  # pylint: disable=import-outside-toplevel

        for name in (host, far):
            try:
                netns.remove(name)
            except Exception:  # pylint: disable=broad-except
                pass
        try:
            os.remove(bridge.lock_path(host))
        except OSError:
            pass


if __name__ == "__main__":
    main()
