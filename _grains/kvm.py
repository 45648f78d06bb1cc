"""
Grains ``kvm``: what kind of hypervisor this minion is, for targeting.

``kvm:hypervisor``
    ``kvm`` (QEMU with /dev/kvm), ``qemu`` (QEMU without hardware
    acceleration) or ``none`` (no QEMU or no libvirt bindings).
``kvm:libvirt_version``
    The libvirt library version (``9.0.0``), or None without libvirt.
``kvm:nested``
    True when nested virtualisation is on in the loaded KVM module.

Cheap to compute: files under /dev, /sys and /usr, and the libvirt library's
own version; no connection to libvirtd is made.

.. code-block:: bash

    salt -G 'kvm:hypervisor:kvm' state.apply kvm
    salt '*' grains.get kvm
"""

try:
    from salt_kvm import host as _host

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - shown by __virtual__
    _IMPORT_ERROR = str(_exc)

__virtualname__ = "kvm"


def __virtual__():
    if _IMPORT_ERROR:
        return False, f"kvm grains: the salt_kvm library is missing ({_IMPORT_ERROR})"
    return __virtualname__


def kvm():
    """The ``kvm`` grain: hypervisor, libvirt_version, nested."""
    return {"kvm": _host.grains()}
