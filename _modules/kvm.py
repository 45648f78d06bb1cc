"""
Execution module ``kvm``: KVM hypervisor hosts (bridges, libvirt networks,
storage pools and volumes, snapshots).

This module is thin: each function validates nothing itself and calls the
``salt_kvm`` library, which takes every input explicitly. Settings come from
minion config or pillar through ``config.get``: ``kvm:connection:uri``
(default ``qemu:///system``).

Every function that talks to libvirt also takes ``connection``: a libvirt URI
for this one call, instead of ``kvm:connection:uri`` (like ``virsh -c``)::

    salt-call kvm.pool_list connection=qemu+ssh://root@hv2/system
    salt-call kvm.network_dumpxml default connection=test:///default

Errors are raised as ``CommandExecutionError`` with a one-line cause, or
``SaltInvocationError`` naming the bad argument.
"""

import contextvars
import inspect
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
        return (
            False,
            f"kvm: the salt_kvm library is missing ({_IMPORT_ERROR}); "
            "install salt-kvm with pip / salt-pip",
        )
    return _glue.virtual(__virtualname__)


#: the ``connection=`` of the call running now (None: ``kvm:connection:uri``)
_CONNECTION = contextvars.ContextVar("salt_kvm_connection", default=None)


def _session():
    """The connection for an ad hoc call: shared within the run, fresh listings."""
    return _glue.session(__context__, __salt__["config.get"], connection=_CONNECTION.get()).fresh()


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


def _kvm_pillar(pillar):
    """``pillar`` as given, else this minion's ``kvm`` pillar (None when it has none).

    Read from ``__pillar__``, not ``pillar.get``: since Salt 3008 ``pillar.get``
    returns masked values (``'**********'``) outside a renderer. The values are
    copied into plain dicts and lists so no error message shows a mask.
    """
    if pillar is None:
        pillar = __pillar__.get("kvm")  # noqa: F821 - Salt injects __pillar__
    return _glue.plain(pillar)


def validate_pillar(pillar=None):
    """
    Validate the ``kvm`` pillar (this minion's, or the one given) and return it
    normalised (sizes in bytes, durations in seconds). Every error is reported
    with its path, one per line, e.g.
    ``kvm:pools:default:volumes:ubuntu.qcow2:size: '20X' is not a size (...)``;
    a bad pillar makes the call fail (exit code 1 from ``salt-call``). A minion
    without a ``kvm`` pillar validates as empty (``{}``).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.validate_pillar
        salt-call kvm.validate_pillar pillar='{pools: {images: {type: dir, target: /srv/images}}}'
    """
    from salt_kvm import schema  # pylint: disable=import-outside-toplevel

    pillar = _kvm_pillar(pillar)
    return _glue.check_pillar(schema.validate_pillar, {} if pillar is None else pillar)


def render_formula(part="all", pillar=None, fail_state=False):
    """
    Render the states of the ``kvm`` formula from the pillar (this minion's, or
    the one given), after validating all of it: ``part`` is ``all`` (default:
    every state ``state.apply kvm`` runs, in order), ``bridges``, ``networks``,
    ``storage`` or ``snapshots``. Used by ``kvm/*.sls`` (``kvm/init.sls`` asks
    for ``init``: the parts to include, or the one state below).

    fail_state
        On a bad pillar, return one failing ``kvm.pillar_invalid`` state with
        every error on its own line instead of raising (what the SLS files
        use, so the run shows the paths of the bad values, not a traceback);
        without a ``kvm`` pillar, one succeeding ``kvm.pillar_missing`` state
        that says so.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.render_formula
        salt '*' kvm.render_formula storage
    """
    from salt_kvm import formula  # pylint: disable=import-outside-toplevel

    pillar = _kvm_pillar(pillar)
    if part == "init":
        return _call(formula.render_init, pillar)
    if fail_state:
        return _call(formula.render_or_fail, part, pillar)
    return _glue.check_pillar(formula.render, part, {} if pillar is None else pillar)


# --- bridges (salt_kvm.bridge) ------------------------------------------------


def _bridge():
    from salt_kvm import bridge  # pylint: disable=import-outside-toplevel

    return bridge


def bridge_list(netns=None):
    """
    The host's kernel bridges as ``brctl show`` shows them (name, bridge id,
    STP, ports) plus their addresses. ``netns`` names a network namespace.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_list
    """
    return _call(_bridge().bridge_list, _session(), netns=netns)


def bridge_show(name, netns=None):
    """
    Every attribute of bridge ``name`` (stp, forward_delay, hello_time, max_age,
    ageing_time in seconds, priority, vlan_filtering, default_pvid,
    mcast_snooping, mtu, mac), every port (state, cost, priority, hairpin,
    VLANs; for a VM tap the VM and its MAC), addresses, gateways and routes.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_show br0
    """
    return _call(_bridge().bridge_show, _session(), name, netns=netns)


def bridge_fdb(name, netns=None):
    """
    The MAC table of bridge ``name``: mac, port, vlan, kind (local, static,
    learned) and the VM owning the MAC where known.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_fdb br0
    """
    return _call(_bridge().bridge_fdb, _session(), name, netns=netns)


def bridge_create(name, netns=None, root=None, **kwargs):
    """
    Create bridge ``name`` with the attributes of the ``kvm:bridges`` pillar
    (ports, stp, forward_delay, mtu, addresses, gateway, probe, persist, ...),
    validated as the state validates them; a port holding the host's address
    moves it to the bridge, with the probe and rollback of ``kvm.bridge_present``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_create br1 ports='[eno2]' stp=False forward_delay=0
    """
    return _call(_bridge().bridge_create, _session(), name, netns=netns, root=root, **kwargs)


def bridge_set(name, netns=None, root=None, **kwargs):
    """
    Change attributes (the ``kvm:bridges`` pillar keys) of existing bridge
    ``name``. Ports not given are left alone.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_set br0 stp=True forward_delay=4 mtu=9000
    """
    return _call(_bridge().bridge_set, _session(), name, netns=netns, root=root, **kwargs)


def bridge_delete(name, force=False, netns=None):
    """
    Delete bridge ``name``. Refused while VM taps are attached or while it
    carries the host's addresses or default route, unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_delete br1
    """
    return _call(_bridge().bridge_delete, _session(), name, force=force, netns=netns)


def bridge_port_add(bridge, port, netns=None, **kwargs):
    """
    Add ``port`` (an existing link, or a VLAN sub-interface like ``eno1.100``
    created on demand) to ``bridge``, with optional cost, priority, hairpin,
    vlans; addresses and routes the port holds move to the bridge (probe and
    rollback as in the state).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_port_add br0 eno2 cost=4
    """
    return _call(_bridge().bridge_port_add, _session(), bridge, port, netns=netns, **kwargs)


def bridge_port_remove(bridge, port, netns=None):
    """
    Take ``port`` out of ``bridge``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.bridge_port_remove br0 eno2
    """
    return _call(_bridge().bridge_port_remove, _session(), bridge, port, netns=netns)


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
    return _call(_network().network_list, _session())


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
    return _call(_network().network_show, _session(), name)


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

        salt '*' kvm.network_define lab mode=nat address=198.51.100.1/24 \\
            dhcp='{start: 198.51.100.100, end: 198.51.100.200}'
        salt '*' kvm.network_define lan mode=bridge bridge=br0
    """
    return _call(_network().network_define, _session(), name, **kwargs)


def network_start(name):
    """
    Start a defined libvirt network (True also when it was running).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_start lab
    """
    return _call(_network().network_start, _session(), name)


def network_stop(name, force=False):
    """
    Stop (destroy) a running libvirt network. Refuses while running VMs are
    attached (they would lose their link) unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_stop lab
    """
    return _call(_network().network_stop, _session(), name, force=force)


def network_undefine(name, force=False):
    """
    Stop and remove a libvirt network. Refuses while running VMs are attached
    unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_undefine lab
    """
    return _call(_network().network_undefine, _session(), name, force=force)


def network_autostart(name, enabled=True):
    """
    Start a libvirt network when libvirtd starts (``enabled=False``: do not).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_autostart lab
        salt '*' kvm.network_autostart lab enabled=False
    """
    return _call(_network().network_autostart, _session(), name, enabled=enabled)


def network_leases(name):
    """
    The DHCP leases of a libvirt network:
    ``[{mac, ip, prefix, type, hostname, clientid, expiry, interface}]``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_leases default
    """
    return _call(_network().network_leases, _session(), name)


def network_dumpxml(name, inactive=False):
    """
    The raw libvirt XML of network ``name``, as ``virsh net-dumpxml`` prints it
    (``inactive=True``: its persistent definition, not the live one). The
    escape hatch for what ``kvm.network_show`` does not show.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.network_dumpxml default
        salt '*' kvm.network_dumpxml lab inactive=True
    """
    from salt_kvm import rawxml  # pylint: disable=import-outside-toplevel

    return _call(rawxml.network_dumpxml, _session(), name, inactive=inactive)


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
    return _call(
        _storage().pool_define,
        _session(),
        name,
        type=type,
        target=target,
        source=source,
        autostart=autostart,
    )


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


def pool_dumpxml(name, inactive=False):
    """
    The raw libvirt XML of pool ``name``, as ``virsh pool-dumpxml`` prints it
    (``inactive=True``: its persistent definition). Secrets appear only as
    their libvirt reference. The escape hatch for what ``kvm.pool_show`` does
    not show.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.pool_dumpxml default
    """
    from salt_kvm import rawxml  # pylint: disable=import-outside-toplevel

    return _call(rawxml.pool_dumpxml, _session(), name, inactive=inactive)


def _volumes():
    from salt_kvm import storage_volumes  # pylint: disable=import-outside-toplevel

    return storage_volumes


def _progress():
    """Where long work (import, clone, wipe, snapshot merge) reports progress: the
    minion log and the events ``salt/kvm/progress/<operation>`` (to the master when
    there is one); every ``kvm:progress:interval`` seconds (pillar or minion config, default 5)."""
    from salt_kvm import progress  # pylint: disable=import-outside-toplevel

    return progress.salt_channel(__opts__, __salt__)


def volume_list(pool):
    """
    The volumes of a running pool (like ``virsh vol-list``): path, format,
    capacity, allocation, backing file.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_list default
    """
    return _call(_volumes().volume_list, _session(), pool)


def volume_show(pool, name):
    """
    One volume: format, capacity, allocation, path, its backing chain, the VMs
    using it and the volumes it backs.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_show default web01.qcow2
    """
    return _call(_volumes().volume_show, _session(), pool, name)


def volume_create(pool, name, size=None, format=None, backing=None, preallocation=None):  # pylint: disable=redefined-builtin
    """
    Create a volume: ``format`` raw, qcow2 (default in file pools) or vmdk;
    ``size`` like ``20G``; ``backing`` a volume of the same pool or a path
    (size defaults to the backing volume's); ``preallocation`` off, metadata,
    falloc or full.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_create default web01.qcow2 20G
        salt '*' kvm.volume_create default web02.qcow2 backing=base.qcow2
    """
    return _call(
        _volumes().volume_create,
        _session(),
        pool,
        name,
        size=size,
        format=format,
        backing=backing,
        preallocation=preallocation,
    )


def volume_import(pool, name, source, sha256=None, format=None):  # pylint: disable=redefined-builtin
    """
    Stream a local file or an http(s) URL into a new volume, checking its
    sha256 (a mismatch removes the volume). Progress (percent, rate) goes to
    the minion log and to the events ``salt/kvm/progress/import``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_import default base.qcow2 https://example.org/base.qcow2 sha256=0123...
    """
    return _call(
        _volumes().volume_import,
        _session(),
        pool,
        name,
        source,
        sha256=sha256,
        format=format,
        progress=_progress(),
    )


def volume_clone(pool, source, name, format=None):  # pylint: disable=redefined-builtin
    """
    Copy volume ``source`` to a new volume ``name`` in the same pool,
    optionally converting it (``format=raw``/``qcow2``/``vmdk``). Progress
    goes to the minion log and to the events ``salt/kvm/progress/clone``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_clone default base.qcow2 base.raw format=raw
    """
    return _call(
        _volumes().volume_clone, _session(), pool, source, name, format=format, progress=_progress()
    )


def volume_resize(pool, name, size, force=False):
    """
    Grow a volume to ``size``; when a running VM has it attached, the VM's
    block device grows online. Shrinking is refused unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_resize default web01.qcow2 40G
    """
    return _call(_volumes().volume_resize, _session(), pool, name, size, force=force)


def volume_wipe(pool, name, force=False):
    """
    Overwrite a volume with zeros. Refused while a VM uses it or it backs
    another volume, unless ``force=True``. Progress goes to the minion log and
    to the events ``salt/kvm/progress/wipe``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_wipe default scratch.img
    """
    return _call(_volumes().volume_wipe, _session(), pool, name, force=force, progress=_progress())


def volume_delete(pool, name, force=False):
    """
    Delete a volume. Refused while a VM uses it or it backs another volume,
    unless ``force=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_delete default old.qcow2
    """
    return _call(_volumes().volume_delete, _session(), pool, name, force=force)


def volume_dumpxml(pool, name):
    """
    The raw libvirt XML of volume ``name`` of the running pool ``pool``, as
    ``virsh vol-dumpxml`` prints it. The escape hatch for what
    ``kvm.volume_show`` does not show.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.volume_dumpxml default web01.qcow2
    """
    from salt_kvm import rawxml  # pylint: disable=import-outside-toplevel

    return _call(rawxml.volume_dumpxml, _session(), pool, name)


# --- end pools and volumes ----------------------------------------------------

# --- VMs (salt_kvm.vm) ----------------------------------------------------------


def _vm():
    from salt_kvm import vm  # pylint: disable=import-outside-toplevel

    return vm


def vm_list():
    """
    Every VM: state, autostart, vCPUs, memory, disks (with their pool and
    volume), NICs (bridge or network, MAC, model, and the IP addresses where
    libvirt knows them), the serial console file.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_list
    """
    return _call(_vm().vm_list, _session())


def vm_show(name):
    """
    One VM, as ``kvm.vm_list`` shows it.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_show web01
    """
    return _call(_vm().vm_show, _session(), name)


def vm_define(name, **spec):
    """
    Define a VM from the keys of a ``kvm:vms`` pillar entry (``memory``,
    ``vcpus``, ``disks``, ``nics``, ``boot``, ``console``, ...), or change an
    existing definition in place (what the keys do not model is kept). A
    running VM keeps running; the change takes effect at its next start.
    ``cloud_init`` writes the VM's NoCloud seed ISO (only when its content
    changes), ``firmware`` and ``graphics`` work as in the pillar.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_define web01 memory=1G vcpus=2 \\
            disks='[{pool: default, volume: web01.qcow2}]' nics='[{bridge: br0}]'
        salt '*' kvm.vm_define web02 memory=1G vcpus=1 firmware=uefi \\
            graphics='{type: vnc, password: s3cret}' \\
            cloud_init='{user_data: {runcmd: [echo hi]}}'
    """
    spec = {k: v for k, v in spec.items() if not k.startswith("__")}
    return _call(_vm().vm_define, _session(), name, **spec)


def vm_start(name):
    """
    Start a VM (or resume a paused one).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_start web01
    """
    return _call(_vm().vm_start, _session(), name)


def vm_shutdown(name, timeout=120, force=False):
    """
    Shut a VM down through ACPI and wait up to ``timeout`` seconds; a guest
    that does not stop in time is an error unless ``force=True`` (then it is
    powered off).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_shutdown web01 timeout=60
    """
    return _call(_vm().vm_shutdown, _session(), name, timeout=timeout, force=force)


def vm_stop(name):
    """
    Power a VM off at once (its guest gets no chance to shut down).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_stop web01
    """
    return _call(_vm().vm_stop, _session(), name)


def vm_reboot(name):
    """
    Ask a running VM to reboot (ACPI).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_reboot web01
    """
    return _call(_vm().vm_reboot, _session(), name)


def vm_autostart(name, enabled=True):
    """
    Start the VM when the host boots (``enabled=False``: don't).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_autostart web01 enabled=False
    """
    return _call(_vm().vm_autostart, _session(), name, enabled=enabled)


def vm_console(name, lines=50):
    """
    The last ``lines`` lines of a VM's serial console, for a VM declared with
    ``console: {log: true}``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_console web01 lines=20
    """
    return _call(_vm().vm_console, _session(), name, lines=lines)


def vm_undefine(name, purge=False):
    """
    Power a VM off and remove its definition (and its snapshots' metadata).
    Its volumes are kept unless ``purge=True``, and even then a volume that
    another VM uses, or that another image is built on, is kept.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_undefine old01 purge=True
    """
    return _call(_vm().vm_undefine, _session(), name, purge=purge)


def _vm_live():
    from salt_kvm import vm_live  # pylint: disable=import-outside-toplevel

    return vm_live


def vm_attach(
    name,
    device=None,
    pool=None,
    volume=None,
    bridge=None,
    network=None,
    mac=None,
    model=None,
    link=None,
):
    """
    Attach a disk or a NIC to a VM: to the running VM (hotplug: the guest
    needs no help) and to its definition, or to the definition only when it is
    shut off. ``device=disk`` takes ``pool`` and ``volume`` (the next free
    ``vdX``); ``device=nic`` takes ``bridge`` or ``network``, and optionally
    ``mac`` (else a new one), ``model`` (virtio) and ``link`` (up or down).
    A VM declared in the pillar goes back to the pillar's disks and NICs at
    the next ``state.apply``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_attach web01 device=disk pool=default volume=data.qcow2
        salt '*' kvm.vm_attach web01 device=nic bridge=br0 mac=52:54:00:00:00:02
    """
    return _call(
        _vm_live().vm_attach,
        _session(),
        name,
        device=device,
        pool=pool,
        volume=volume,
        bridge=bridge,
        network=network,
        mac=mac,
        model=model,
        link=link,
    )


def vm_detach(name, device=None, target=None, pool=None, volume=None, mac=None, timeout=None):
    """
    Detach a disk (by ``target``, like ``vdb``, or by ``pool`` and ``volume``;
    the volume is kept) or a NIC (by ``mac``) from a VM: from the running VM
    and from its definition. Taking a device away needs the guest's answer to
    the hot-unplug request: the call waits ``timeout`` seconds (10) and fails
    clearly when the guest keeps it (it is then gone from the definition and
    leaves at the next restart). A VM declared in the pillar goes back to the
    pillar's disks and NICs at the next ``state.apply``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.vm_detach web01 device=disk target=vdb
        salt '*' kvm.vm_detach web01 device=disk pool=default volume=data.qcow2
        salt '*' kvm.vm_detach web01 device=nic mac=52:54:00:00:00:02
    """
    return _call(
        _vm_live().vm_detach,
        _session(),
        name,
        device=device,
        target=target,
        pool=pool,
        volume=volume,
        mac=mac,
        timeout=timeout,
    )


# --- end VMs --------------------------------------------------------------------

# --- snapshots (salt_kvm.snapshot) --------------------------------------------


def _snapshot():
    from salt_kvm import snapshot  # pylint: disable=import-outside-toplevel

    return snapshot


def snapshot_list(vm):
    """
    Every snapshot of a VM, oldest first: name, description, created (UTC),
    state, kind (internal/external), memory (True/False, memory_file),
    parent, children, current, and per disk the kind and the file (the
    overlay of an external snapshot, the image holding an internal one).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_list web01
    """
    return _call(_snapshot().snapshot_list, _session(), vm)


def snapshot_tree(vm):
    """
    The snapshot tree of a VM: roots first, each with its children.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_tree web01
    """
    return _call(_snapshot().snapshot_tree, _session(), vm)


def snapshot_show(vm, name):
    """
    One snapshot of a VM: what ``snapshot_list`` reports plus its XML.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_show web01 before-upgrade
    """
    return _call(_snapshot().snapshot_show, _session(), vm, name)


def snapshot_create(
    vm, name=None, memory=True, disk_only=False, external=False, quiesce=False, description=None
):
    """
    Take a snapshot of a VM. A running VM gets an internal snapshot with its
    RAM by default; ``memory=False`` or ``disk_only=True`` make an external
    disk-only snapshot (new qcow2 overlays); ``external=True`` an external one
    with a memory file (unless ``disk_only``). A shut-off VM gets an internal
    (or with ``external=True`` an external) disk snapshot. ``quiesce=True``
    freezes the guest's filesystems through the QEMU guest agent (external
    disk-only; a clear error when no agent answers). The name defaults to the
    UTC time (``20240131-235959``). Combinations libvirt could not later
    delete or revert are refused with the reason.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_create web01 before-upgrade description='before the 24.04 upgrade'
        salt '*' kvm.snapshot_create web01 external=True memory=False
    """
    return _call(
        _snapshot().snapshot_create,
        _session(),
        vm,
        name=name,
        memory=memory,
        disk_only=disk_only,
        external=external,
        quiesce=quiesce,
        description=description,
    )


def snapshot_revert(vm, name, running=None):
    """
    Revert a VM to a snapshot (internal or external). The VM ends in the
    snapshot's state (running, paused, shut off; a disk-only snapshot ends
    shut off) unless ``running=True`` / ``running=False`` says otherwise.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_revert web01 before-upgrade
        salt '*' kvm.snapshot_revert web01 before-upgrade running=True
    """
    return _call(_snapshot().snapshot_revert, _session(), vm, name, running=running)


def snapshot_delete(vm, name, children=False):
    """
    Delete a snapshot (with ``children=True`` also every snapshot below it).
    External snapshots libvirt cannot delete itself are merged: the overlay is
    committed into the image below it (live for a running VM), the VM points
    at the merged image and no overlay is left behind. A merge's progress goes
    to the minion log and to the events ``salt/kvm/progress/merge``.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_delete web01 before-upgrade
    """
    return _call(
        _snapshot().snapshot_delete, _session(), vm, name, children=children, progress=_progress()
    )


def snapshot_prune(vm, keep, older_than=None, prefix="auto-"):
    """
    Delete the snapshots whose names start with ``prefix`` (default
    ``auto-``) beyond the newest ``keep``; with ``older_than`` (``7d``) only
    those at least that old. Other snapshots are never touched.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_prune web01 keep=3
        salt '*' kvm.snapshot_prune web01 keep=0 older_than=30d prefix=nightly-
    """
    return _call(
        _snapshot().snapshot_prune,
        _session(),
        vm,
        keep,
        older_than=older_than,
        prefix=prefix,
        progress=_progress(),
    )


# --- end snapshots ------------------------------------------------------------

# --- fleet (salt_kvm.fleet): what the kvm runner calls on each host -----------


def host_report():
    """
    This host at a glance, for the ``kvm.report`` runner: kernel bridges and
    their ports, libvirt networks, storage pools (capacity, allocation, % used,
    volume count) and VMs (state, snapshot count, oldest snapshot and its age
    in seconds).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.host_report
    """
    from salt_kvm import fleet  # pylint: disable=import-outside-toplevel

    return _call(fleet.host_report, _session())


def snapshot_vms(vms, name=None, **kwargs):
    """
    Snapshot every VM of this host whose name matches ``vms`` (names or glob
    patterns, a list or comma-separated) with ``kvm.snapshot_create``; extra
    keyword arguments (``memory``, ``disk_only``, ``description`` ...) are
    passed on. A VM that already has snapshot ``name`` is left alone
    (``changed: False``), so a re-run after a partial failure is safe.
    Returns ``{result, vms: {vm: {result, changed, return | comment}}}``; one
    VM failing does not stop the others. Used by the ``kvm.snapshot`` runner.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.snapshot_vms 'web-*' pre-upgrade
    """
    from salt_kvm import fleet  # pylint: disable=import-outside-toplevel

    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    return _call(
        fleet.snapshot_vms, _session(), vms, name, __salt__["kvm.snapshot_create"], **kwargs
    )


def revert_vms(vms, name):
    """
    Revert every VM of this host whose name matches ``vms`` (names or glob
    patterns) to its snapshot ``name`` with ``kvm.snapshot_revert``. Returns
    ``{result, vms: {vm: {result, changed, return | comment}}}``; one VM
    failing does not stop the others. Used by the ``kvm.revert`` runner.

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.revert_vms 'web-*' pre-upgrade
    """
    from salt_kvm import fleet  # pylint: disable=import-outside-toplevel

    return _call(fleet.revert_vms, _session(), vms, name, __salt__["kvm.snapshot_revert"])


# --- end fleet ------------------------------------------------------------------

# --- topology (salt_kvm.topology) ---------------------------------------------


def topology(format="dot", path=None, netns=None, parts=None, names=None):  # pylint: disable=redefined-builtin
    """
    The host as a graph: NICs -> bridges -> taps -> VMs, libvirt networks and
    their bridges, pools -> volumes (and their backing files) -> VMs, and each
    VM's snapshot tree (the current snapshot marked).

    format
        ``dot`` (default: the Graphviz DOT text), ``json`` (``{title, clusters,
        nodes, edges}``), ``svg`` or ``png`` (drawn with Graphviz's ``dot``
        from the package ``graphviz``; needs ``path``).
    path
        The absolute path of the file to write; then the function returns
        ``{path, format, nodes, edges}``.
    netns
        Read the kernel bridges of this network namespace (like
        ``kvm.bridge_list``); libvirt's bridges and taps are still shown.
    parts
        Only these areas (a list or comma-separated): ``bridges``,
        ``networks``, ``storage``, ``vms``, ``snapshots``.
    names
        Only the bridges, networks, pools and VMs whose names match these
        glob patterns (a list or comma-separated).

    CLI Example:

    .. code-block:: bash

        salt '*' kvm.topology
        salt '*' kvm.topology format=svg path=/tmp/host.svg
        salt '*' kvm.topology format=png path=/tmp/storage.png parts=storage,vms \\
            names='web*,default'
    """
    from salt_kvm import topology as topo  # pylint: disable=import-outside-toplevel

    return _call(
        topo.topology, _session(), format=format, path=path, netns=netns, parts=parts, names=names
    )


# --- end topology -------------------------------------------------------------


# --- connection= on every function that talks to libvirt ----------------------

#: functions that never open libvirt (they read the pillar only)
_NO_CONNECTION = frozenset(("validate_pillar", "render_formula"))


def _with_connection(func):
    """``func`` with a keyword ``connection`` (a libvirt URI for this call only).

    Salt reads a function's signature to decide which keyword arguments it
    takes; the wrapper shows ``func``'s own plus ``connection`` (and has no
    ``__wrapped__``, which Salt would follow back to the signature without it).
    """

    def wrapper(*args, connection=None, **kwargs):
        if connection is None:
            return func(*args, **kwargs)
        from salt_kvm import conn  # pylint: disable=import-outside-toplevel

        _call(conn.check_uri, connection)
        token = _CONNECTION.set(str(connection))
        try:
            return func(*args, **kwargs)
        finally:
            _CONNECTION.reset(token)

    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    extra = inspect.Parameter("connection", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = (
        len(params) - 1
        if params and params[-1].kind == inspect.Parameter.VAR_KEYWORD
        else len(params)
    )
    params.insert(at, extra)
    wrapper.__signature__ = sig.replace(parameters=params)
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(wrapper, attr, getattr(func, attr))
    return wrapper


for _name, _func in list(globals().items()):
    if (
        not _name.startswith("_")
        and inspect.isfunction(_func)
        and _func.__module__ == __name__
        and _name not in _NO_CONNECTION
        and "connection" not in inspect.signature(_func).parameters
    ):
        globals()[_name] = _with_connection(_func)
del _name, _func
