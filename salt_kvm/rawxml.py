"""Raw libvirt XML of pools, volumes and networks: the escape hatch.

What ``virsh pool-dumpxml``, ``vol-dumpxml`` and ``net-dumpxml`` print, for
whatever salt-kvm's own keys do not show. Read only; nothing is parsed or
changed. A pool's XML holds only the reference to its libvirt secret, never
the secret's value.
"""

from __future__ import annotations

from salt_kvm import storage, storage_volumes
from salt_kvm.conn import Session, _lv, libvirt_errors
from salt_kvm.network import _lookup as _network_lookup


def _flags(inactive: bool, name: str) -> int:
    """``VIR_*_XML_INACTIVE`` (the persistent definition) when ``inactive``."""
    return getattr(_lv(), name) if inactive else 0


def pool_dumpxml(session: Session, name: str, *, inactive: bool = False) -> str:
    """The XML of pool ``name`` (``inactive``: its persistent definition)."""
    obj = storage.lookup_pool(session, name)["obj"]
    with libvirt_errors(f"pool '{name}'"):
        return obj.XMLDesc(_flags(inactive, "VIR_STORAGE_XML_INACTIVE"))


def volume_dumpxml(session: Session, pool: str, name: str) -> str:
    """The XML of volume ``name`` of the running pool ``pool``."""
    obj = storage_volumes._lookup(session, pool, name)["obj"]  # pylint: disable=protected-access
    with libvirt_errors(f"volume '{name}' of pool '{pool}'"):
        return obj.XMLDesc(0)


def network_dumpxml(session: Session, name: str, *, inactive: bool = False) -> str:
    """The XML of libvirt network ``name`` (``inactive``: its persistent definition)."""
    obj = _network_lookup(session, name)
    with libvirt_errors(f"network '{name}'"):
        return obj.XMLDesc(_flags(inactive, "VIR_NETWORK_XML_INACTIVE"))
