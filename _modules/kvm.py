"""
Execution module ``kvm``: KVM hypervisor hosts (bridges, libvirt networks,
storage pools and volumes, snapshots).

This module is thin: each function validates nothing itself and calls the
``salt_kvm`` library, which takes every input explicitly. Settings come from
minion config or pillar through ``config.get``: ``kvm:connection:uri``
(default ``qemu:///system``).

Errors are raised as ``CommandExecutionError`` with a one-line cause, or
``SaltInvocationError`` naming the bad argument.
"""

import logging

try:
    from salt_kvm import glue as _glue

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - shown by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "kvm"


def __virtual__():
    if _IMPORT_ERROR:
        return False, f"kvm: the salt_kvm library is missing ({_IMPORT_ERROR}); install salt-kvm with pip / salt-pip"
    return _glue.virtual(__virtualname__)


def _session():
    """The connection for an ad hoc call: shared within the run, fresh listings."""
    return _glue.session(__context__, __salt__["config.get"]).fresh()


def _call(func, *args, **kwargs):
    return _glue.call(func, *args, **kwargs)


# --- host and formula ---------------------------------------------------------


def host_info():
    """
    What this hypervisor is: hypervisor (kvm or qemu), whether /dev/kvm exists,
    nested virtualisation, libvirt and QEMU versions, CPU, memory, and where
    libvirt keeps images, pool, network and VM definitions and snapshot metadata.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.host_info
    """
    from salt_kvm import host  # pylint: disable=import-outside-toplevel

    return _call(host.info, _session())


def validate_pillar(pillar=None):
    """
    Validate the ``kvm`` pillar (this minion's, or the one given) and return it
    normalised (sizes in bytes, durations in seconds). Every error is reported
    with its path, e.g. ``kvm:pools:default:volumes:ubuntu.qcow2:size: '20X' is not a size``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.validate_pillar
    """
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    if pillar is None:
        pillar = __salt__["pillar.get"]("kvm", {})
    return _call(schema.validate_pillar, pillar)


def render_formula(part, pillar=None):
    """
    Render one part of the ``kvm`` formula (``bridges``, ``networks``,
    ``storage`` or ``snapshots``) from the pillar, after validating all of it.
    Used by ``kvm/*.sls``; handy to see what ``state.apply kvm`` would run.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.render_formula storage
    """
    from salt_kvm import formula  # pylint: disable=import-outside-toplevel

    if pillar is None:
        pillar = __salt__["pillar.get"]("kvm", {})
    return _call(formula.render, part, pillar)


# --- bridges (salt_kvm.bridge) ------------------------------------------------

# --- end bridges --------------------------------------------------------------

# --- libvirt networks (salt_kvm.network) --------------------------------------


def _network():
    from salt_kvm import network  # pylint: disable=import-outside-toplevel

    return network


def network_list():
    """
    List the libvirt networks: ``{name: {mode, bridge, active, autostart, persistent}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_list
    """
    return _call(_network().list_networks, _session())


def network_show(name):
    """
    Show one libvirt network: mode, bridge, dev, addresses, DHCP ranges and
    static hosts, DNS domain, MTU, active, autostart, persistent, the VMs on it
    (``interfaces``, ``vms``) and the running ones attached (``attached``), and
    ``pending_restart`` (keys defined but not yet live).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_show default
    """
    return _call(_network().show, _session(), name)


def network_define(name, **kwargs):
    """
    Define a libvirt network (or update its persistent definition; a running
    network needs ``kvm.network_stop`` / ``kvm.network_start`` to take it).
    Takes the keys of a ``kvm:networks`` pillar entry: ``mode`` (nat, route,
    isolated, open, bridge), ``bridge``, ``dev``, ``address``, ``address6``,
    ``dhcp`` ({start, end, hosts: [{mac, ip, name}]}), ``dhcp6``, ``domain``,
    ``mtu``, ``autostart``. Returns what ``kvm.network_show`` returns.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_define lab mode=nat address=198.51.100.1/24 dhcp='{start: 198.51.100.100, end: 198.51.100.200}'
        salt '*' kvm.network_define lan mode=bridge bridge=br0
    """
    return _call(_network().define, _session(), name, **kwargs)


def network_start(name):
    """
    Start a defined libvirt network (True also when it was running).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_start lab
    """
    return _call(_network().start, _session(), name)


def network_stop(name, force=False):
    """
    Stop (destroy) a running libvirt network. Refuses while running VMs are
    attached (they would lose their link) unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_stop lab
    """
    return _call(_network().stop, _session(), name, force=force)


def network_undefine(name, force=False):
    """
    Stop and remove a libvirt network. Refuses while running VMs are attached
    unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_undefine lab
    """
    return _call(_network().undefine, _session(), name, force=force)


def network_autostart(name, enabled=True):
    """
    Start a libvirt network when libvirtd starts (``enabled=False``: do not).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_autostart lab
        salt '*' kvm.network_autostart lab enabled=False
    """
    return _call(_network().set_autostart, _session(), name, enabled)


def network_leases(name):
    """
    The DHCP leases of a libvirt network: ``[{mac, ip, prefix, type, hostname, clientid, expiry, interface}]``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_leases default
    """
    return _call(_network().leases, _session(), name)

# --- end libvirt networks -----------------------------------------------------

# --- pools and volumes (salt_kvm.storage) -------------------------------------


def _storage():
    from salt_kvm import storage  # pylint: disable=import-outside-toplevel

    return storage


def pool_list():
    """
    Every storage pool (like ``virsh pool-list --all``): type, state, autostart,
    capacity, allocation, available bytes, target.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_list
    """
    return _call(_storage().pool_list, _session())


def pool_show(name):
    """
    One pool: type, state, autostart, capacity/allocation/available, target,
    source (secrets never shown) and the number of volumes.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_show default
    """
    return _call(_storage().pool_show, _session(), name)


def pool_define(name, type, target=None, source=None, autostart=None):  # pylint: disable=redefined-builtin
    """
    Define (not build, not start) a pool of any libvirt type: ``dir``, ``fs``,
    ``netfs``, ``logical``, ``disk``, ``iscsi``, ``iscsi-direct``, ``rbd``,
    ``gluster``. ``source`` takes the pillar's keys (``devices``, ``dir``,
    ``name``, ``hosts``, ``format``, ``initiator``, ``auth``); an
    ``auth:secret`` goes into a private libvirt secret.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_define images type=dir target=/srv/images
        salt '*' kvm.pool_define vms type=logical source='{name: vg_vms, devices: [/dev/sdb]}'
    """
    return _call(_storage().pool_define, _session(), name, type=type, target=target, source=source, autostart=autostart)


def pool_build(name, overwrite=False):
    """
    Build a pool's storage (directory, filesystem, partition table, volume
    group). Existing storage is never overwritten unless ``overwrite=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_build images
    """
    return _call(_storage().pool_build, _session(), name, overwrite=overwrite)


def pool_start(name, build=False):
    """
    Start a pool (``build=True`` builds it first, never overwriting storage).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_start images
    """
    return _call(_storage().pool_start, _session(), name, build=build)


def pool_stop(name):
    """
    Stop a pool (its volumes and storage stay).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_stop images
    """
    return _call(_storage().pool_stop, _session(), name)


def pool_refresh(name):
    """
    Rescan a pool's volumes.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_refresh images
    """
    return _call(_storage().pool_refresh, _session(), name)


def pool_autostart(name, enable=True):
    """
    Turn a pool's autostart on or off.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_autostart images enable=False
    """
    return _call(_storage().pool_autostart, _session(), name, enable=enable)


def pool_undefine(name):
    """
    Stop and undefine a pool; its volumes and storage stay on disk.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_undefine images
    """
    return _call(_storage().pool_undefine, _session(), name)


def pool_delete(name, force=False):
    """
    Delete a pool's volumes and its storage, then undefine it. Refused while a
    volume is in use by a VM unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_delete scratch
    """
    return _call(_storage().pool_delete, _session(), name, force=force)


# --- end pools and volumes ----------------------------------------------------

# --- snapshots (salt_kvm.snapshot) --------------------------------------------

# --- end snapshots ------------------------------------------------------------
