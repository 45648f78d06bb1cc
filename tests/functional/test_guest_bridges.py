"""Bridges as a real guest sees them: its pings cross a bridge salt-kvm declared.

libvirtd puts a VM's tap in the ROOT network namespace, so the bridge here is a
``kvt-`` bridge in the root namespace; its uplink is a veth whose far end is in a
"LAN" namespace holding the gateway. The guest (tests/support/guest.py) pings
the gateway five times a second and prints each reply (``seq=N``) on its
console, so a lost tap or a cut shows as missing sequence numbers.
"""

import signal
import subprocess
import time

from tests.support import guest as guestlib

SPEC = {"stp": False, "forward_delay": 0}


def _taps(kvm, bridge):
    return [p["name"] for p in kvm.bridge_show(bridge)["ports"] if p["kind"] == "tun"]


def test_guest_pings_the_lan_through_a_declared_bridge(kvm_state, kvm, guests, root_lan):
    """The guest's traffic crosses the bridge; a changed re-apply keeps its tap and its traffic;
    a failed probe rolls back and the traffic still flows; bridge_absent is refused while it runs.

    Catches: a bridge that does not forward (no replies), a re-apply that recreates the bridge
    or drops its ports (tap gone, replies stop), a rollback that cuts the guest off."""
    ret = kvm_state.bridge_present(name=root_lan.bridge, ports=[root_lan.uplink], **SPEC)
    assert ret.result is True, ret.comment
    g = guests(
        nics=[{"bridge": root_lan.bridge}], ip=root_lan.guest, work=[f"ping:{root_lan.gateway}"]
    )
    g.wait_replies(3, timeout=60)
    taps = _taps(kvm, root_lan.bridge)
    assert len(taps) == 1, kvm.bridge_show(root_lan.bridge)

    # a changed bridge, re-applied with the guest on it
    mark = g.offset()
    changed = kvm_state.bridge_present(
        name=root_lan.bridge, ports=[root_lan.uplink], ageing_time=120, **SPEC
    )
    assert changed.result is True and changed.changes, changed.comment
    seqs = g.wait_replies(10, since=mark, timeout=30)
    assert _taps(kvm, root_lan.bridge) == taps, "the re-apply dropped the guest's tap"
    assert guestlib.longest_gap(seqs) <= 1.0, (
        f"the re-apply cut the guest's traffic: replies {seqs}"
    )

    # a failed probe rolls the change back; the guest keeps its traffic throughout
    mark = g.offset()
    failed = kvm_state.bridge_present(
        name=root_lan.bridge,
        ports=[root_lan.uplink],
        ageing_time=200,
        probe={"tcp": "127.0.0.1:9", "timeout": "1s"},
        **SPEC,
    )
    assert failed.result is False and "restored" in failed.comment, failed.comment
    seqs = g.wait_replies(10, since=mark, timeout=30)
    assert _taps(kvm, root_lan.bridge) == taps
    assert guestlib.longest_gap(seqs) <= 1.0, (
        f"the rollback cut the guest's traffic: replies {seqs}"
    )
    assert kvm.bridge_show(root_lan.bridge)["ageing_time"] == 120

    # refused while the guest's tap is attached, and the guest still pings afterwards
    mark = g.offset()
    refused = kvm_state.bridge_absent(name=root_lan.bridge)
    assert (
        refused.result is False
        and "VM taps are attached" in refused.comment
        and g.name in refused.comment
    )
    g.wait_replies(5, since=mark, timeout=30)
    g.dom.destroy()
    assert kvm_state.bridge_absent(name=root_lan.bridge).result is True


def _host_ping(target, interval=0.05):
    """The host pinging ``target`` every ``interval`` s until it is sent SIGINT."""
    cmd = ["ping", "-n", "-i", str(interval), "-w", "60", "-W", "1", target]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_uplink_address_moves_onto_the_bridge_with_a_guest_on_it(kvm_state, kvm, guests, root_lan):
    """The host's address (and its route) move from the uplink onto a bridge that already carries
    a guest: the host's own traffic to the LAN has a bounded gap (measured), and the guest, cut
    off from the LAN before, reaches it through the bridge after.

    Catches: a migration that loses the host's address or route, or leaves the uplink out of
    the bridge (the guest never reaches the LAN)."""
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    with IPRoute() as ipr:
        ipr.addr(
            "add",
            index=ipr.link_lookup(ifname=root_lan.uplink)[0],
            address=root_lan.host.split("/")[0],
            prefixlen=root_lan.net.prefixlen,
        )
    assert (
        subprocess.run(
            ["ping", "-c", "1", "-W", "2", root_lan.gateway], capture_output=True, check=False
        ).returncode
        == 0
    )
    ret = kvm_state.bridge_present(name=root_lan.bridge, **SPEC)
    assert ret.result is True, ret.comment
    g = guests(
        nics=[{"bridge": root_lan.bridge}], ip=root_lan.guest, work=[f"ping:{root_lan.gateway}"]
    )
    time.sleep(0.5)
    assert g.ping_seqs() == [], "the guest reached the LAN before the uplink joined its bridge"

    pinger = _host_ping(root_lan.gateway)
    time.sleep(0.5)
    mark = g.offset()
    start = time.monotonic()
    moved = kvm_state.bridge_present(
        name=root_lan.bridge,
        ports=[root_lan.uplink],
        probe={"ping": root_lan.gateway, "timeout": "10s"},
        **SPEC,
    )
    applied = time.monotonic() - start
    assert moved.result is True, moved.comment
    assert moved.changes["addresses"]["new"] == [root_lan.host]
    seqs = g.wait_replies(5, since=mark, timeout=30)
    first_reply = time.monotonic() - start
    time.sleep(0.5)
    pinger.send_signal(signal.SIGINT)
    out, _ = pinger.communicate(timeout=30)
    replies = sorted({int(s.split("=")[1]) for s in out.split() if s.startswith("icmp_seq=")})
    host_gap = guestlib.longest_gap(replies, interval=0.05)
    print(
        f"\nuplink migration with a guest attached: apply {applied:.2f}s, host's longest ping "
        f"gap {host_gap:.2f}s "
        f"({len(replies)} replies), guest's first replies within {first_reply:.2f}s of the "
        f"apply, then gap {guestlib.longest_gap(seqs):.2f}s"
    )
    assert host_gap <= 5.0, f"the host was cut off for {host_gap:.2f}s"
    assert guestlib.longest_gap(seqs) <= 1.0
    show = kvm.bridge_show(root_lan.bridge)
    assert root_lan.host in show["addresses"] and len(_taps(kvm, root_lan.bridge)) == 1
