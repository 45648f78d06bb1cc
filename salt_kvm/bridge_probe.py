"""Connectivity probes run after a risky bridge change (uplink migration).

``ping`` sends ICMP echo requests from a raw socket, ``tcp`` connects to
``host:port``. No ``ping`` subprocess: the socket is made inside the bridge's
network namespace with :func:`pyroute2.netns.create_socket` (it enters the
namespace in a short-lived child and passes the socket back), or directly when
the bridge lives in the current namespace. Requests repeat every 0.2 s until a
reply comes or ``timeout`` (the total time the probe may take) runs out:
right after a migration the port may still be learning, so the first request
can be lost.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from typing import Any, Optional

from salt_kvm.errors import KvmError

DEFAULT_TIMEOUT = 10.0
_INTERVAL = 0.2


def _socket(netns, family, kind, proto):
    if not netns:
        return socket.socket(family, kind, proto)
    from pyroute2 import netns as pr_netns  # pylint: disable=import-outside-toplevel

    return pr_netns.create_socket(netns, family=family, socket_type=kind, proto=proto, flags=0)


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, timeout: float = DEFAULT_TIMEOUT, *, netns: Optional[str] = None) -> bool:
    """True when ``address`` answers an ICMP echo within ``timeout`` seconds."""
    addr = ipaddress.ip_address(address)
    v6 = addr.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    deadline = time.monotonic() + timeout
    try:
        sock = _socket(netns, family, socket.SOCK_RAW, proto)
    except Exception as exc:  # pylint: disable=broad-except
        raise KvmError(
            f"cannot open an ICMP socket{' in ' + netns if netns else ''}: {exc}"
        ) from None
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    echo_request, echo_reply = (128, 129) if v6 else (8, 0)
    seq = 0
    try:
        sock.setblocking(False)
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_send:
                seq += 1
                payload = b"salt-kvm-probe"
                header = struct.pack("!BBHHH", echo_request, 0, 0, ident, seq)
                if not v6:  # the kernel computes the ICMPv6 checksum itself
                    header = struct.pack(
                        "!BBHHH", echo_request, 0, _checksum(header + payload), ident, seq
                    )
                try:
                    sock.sendto(header + payload, (str(addr), 0))
                except OSError:
                    pass  # no route yet (addresses just moved): retry until the deadline
                next_send = now + _INTERVAL
            ready, _, _ = select.select(
                [sock], [], [], max(0.0, min(next_send, deadline) - time.monotonic())
            )
            if not ready:
                continue
            try:
                data, peer = sock.recvfrom(2048)
            except OSError:
                continue
            if ipaddress.ip_address(peer[0].split("%")[0]) != addr:
                continue
            if not v6:
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) >= 8:
                rtype, _code, _sum, rid, _rseq = struct.unpack("!BBHHH", data[:8])
                if rtype == echo_reply and rid == ident:
                    return True
    finally:
        sock.close()


def tcp(target: str, timeout: float = DEFAULT_TIMEOUT, *, netns: Optional[str] = None) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise KvmError(f"probe tcp {target}: cannot resolve {host}: {exc}") from None
    family, _, _, _, sockaddr = infos[0]
    while time.monotonic() < deadline:
        try:
            sock = _socket(netns, family, socket.SOCK_STREAM, 0)
        except Exception as exc:  # pylint: disable=broad-except
            raise KvmError(
                f"cannot open a TCP socket{' in ' + netns if netns else ''}: {exc}"
            ) from None
        try:
            sock.settimeout(max(0.05, min(2.0, deadline - time.monotonic())))
            sock.connect(sockaddr)
            return True
        except OSError:
            left = deadline - time.monotonic()
            if left > 0:
                time.sleep(min(_INTERVAL, left))
        finally:
            sock.close()
    return False


def run(spec: dict[str, Any], netns: Optional[str] = None) -> None:
    """Run a declared probe ``{ping, tcp, timeout}``; raise KvmError saying what failed."""
    timeout = float(spec.get("timeout") or DEFAULT_TIMEOUT)
    start = time.monotonic()
    if spec.get("ping"):
        if not ping(spec["ping"], timeout, netns=netns):
            raise KvmError(f"probe failed: no reply to ping {spec['ping']} within {timeout:g}s")
    if spec.get("tcp"):
        left = max(0.1, timeout - (time.monotonic() - start))
        if not tcp(spec["tcp"], left, netns=netns):
            raise KvmError(f"probe failed: no TCP connection to {spec['tcp']} within {timeout:g}s")
