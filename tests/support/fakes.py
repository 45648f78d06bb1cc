"""One fake libvirt session for the unit tests: :class:`salt_kvm.conn.Session`
without a daemon.

:class:`FakeSession` keeps ``Session``'s interface (``uri``, ``cache``,
``memo``, ``invalidate``, ``fresh``, ``close``, ``conn``). Its memoised
listings are prefilled by the test (what the resources read); ``conn`` is a
:class:`FakeConnection` holding fake domains (pools are :class:`FakePool` in the
listings, :func:`pool_entry`), or, when the test gives
none, a connection that fails the test on first use (a unit test that reaches
libvirt is a bug)::

    session = FakeSession({storage.POOLS_KEY: {...}})          # listings only
    session = FakeSession(conn=FakeConnection(domains=[FakeDomain("web01")]))

Only what the unit tests call is modelled; a missing method is an
``AttributeError`` naming it, never a silent default.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional

from salt_kvm import storage
from salt_kvm.conn import Session
from salt_kvm.xml import storage as sxml

URI = "test:///fake"


class FakeDomain:
    """A ``virDomain``: its name and its snapshots' names."""

    def __init__(self, name: str, snapshots: Iterable[str] = ()) -> None:
        self._name = name
        self.snapshots = list(snapshots)

    def name(self) -> str:
        return self._name

    def snapshotListNames(self, flags: int = 0) -> list[str]:  # noqa: N802
        return list(self.snapshots)


class FakePool:
    """A ``virStoragePool`` that knows only its definition (what ``XMLDesc`` returns)."""

    def __init__(self, xml: str, name: str = "") -> None:
        self.xml = xml
        self._name = name

    def name(self) -> str:
        return self._name

    def XMLDesc(self, flags: int = 0) -> str:  # noqa: N802
        return self.xml


class FakeConnection:
    """A ``virConnect`` listing the fake domains it was given."""

    def __init__(self, domains: Iterable[FakeDomain] = ()) -> None:
        self.domains = list(domains)

    def listAllDomains(self, flags: int = 0) -> list[FakeDomain]:  # noqa: N802
        return list(self.domains)


class NoConnection:
    """The connection of a session the test gave none: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unit tests must not reach libvirt (conn.{name})")


class FakeSession(Session):
    """:class:`salt_kvm.conn.Session` (its own ``memo``, ``invalidate``, ``fresh``) over
    prefilled listings and a fake connection."""

    def __init__(
        self,
        cache: Optional[dict] = None,
        conn: Optional[FakeConnection] = None,
        uri: str = URI,
    ) -> None:
        super().__init__(uri)
        if cache is not None:
            self.cache = cache
        self._conn = NoConnection() if conn is None else conn

    @property
    def conn(self) -> Any:
        return self._conn

    def close(self) -> None:
        self.cache.clear()


# --- listings as the storage resources memoise them ------------------------------------------

POOL_UUID = "6c1e9f59-7c8a-4a41-9d1a-1f8f2c0e4d21"


def pool_entry(
    ptype: str = "dir",
    target: Optional[str] = "/srv/images",
    source: Optional[dict] = None,
    *,
    name: str = "p",
    active: bool = True,
    autostart: bool = False,
) -> dict:
    """One pool of the memoised pool listing (``storage.POOLS_KEY``), built from its XML."""
    xml = sxml.Pool.build(name, ptype, target=target, source=source, uuid=POOL_UUID).to_xml()
    return {
        "obj": FakePool(xml, name),
        "xml": xml,
        "active": active,
        "autostart": autostart,
        "persistent": True,
    }


def volume_entry(
    name: str,
    capacity: int,
    fmt: Optional[str] = "qcow2",
    backing: Optional[str] = None,
    path_dir: str = "/srv/images",
) -> dict:
    """One volume of a pool's memoised volume listing (``storage:vols:<pool>``)."""
    vol = sxml.Volume.build(name, capacity, fmt=fmt, backing_path=backing)
    vol.path = os.path.join(path_dir, name)
    return {"obj": None, "xml": vol.to_xml()}


def storage_session(pools: dict, volumes: Optional[dict] = None) -> FakeSession:
    """A session whose pool listing is ``pools`` (``{name: pool_entry(...)}``) and whose
    volume listings are ``volumes`` (``{pool: {name: volume_entry(...)}}``)."""
    cache: dict = {storage.POOLS_KEY: dict(pools)}
    for pool, vols in (volumes or {}).items():
        cache[f"storage:vols:{pool}"] = vols
    return FakeSession(cache)
