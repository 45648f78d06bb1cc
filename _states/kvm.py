"""
State module ``kvm``: declare bridges, libvirt networks, storage pools and
volumes, and snapshots of KVM hosts.

Every state is idempotent, reports ``changes`` as ``{key: {old, new}}``,
predicts them exactly under ``test=True`` (result None, nothing changed), reads
back and verifies after applying, and never destroys data by implication
(``force: True`` / ``purge: True`` where a change would). The work is done by
the ``salt_kvm`` library through one state engine (``salt_kvm.plan``).

Sizes in ``changes`` are written for people (``size: {old: 512 MiB, new:
2 GiB}``); the same values in bytes are in the return's ``bytes`` key, in the
same shape (``bytes: {size: {old: 536870912, new: 2147483648}}``), which
``--out=json`` shows and the highstate output does not.
"""

import inspect

try:
    from salt_kvm import glue as _glue

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - shown by __virtual__
    _IMPORT_ERROR = str(_exc)

__virtualname__ = "kvm"


def __virtual__():
    if _IMPORT_ERROR:
        return (
            False,
            f"kvm: the salt_kvm library is missing ({_IMPORT_ERROR}); "
            "install salt-kvm with pip / salt-pip",
        )
    return _glue.virtual(__virtualname__)


def _session():
    """The run's shared connection and listings (one per state.apply)."""
    return _glue.session(__context__, __salt__["config.get"])


def _test():
    return bool(__opts__.get("test"))


def _progress():
    """Where long work reports progress: the minion log and
    ``salt/kvm/progress/<operation>`` events."""
    from salt_kvm import progress  # pylint: disable=import-outside-toplevel

    return progress.salt_channel(__opts__, __salt__)


def pillar_invalid(name, message):
    """
    Fail with ``message``: what the ``kvm`` formula renders instead of any
    state when the ``kvm`` pillar is invalid (the message names the bad
    value's path). Fails in test mode too; changes nothing.
    """
    return {"name": name, "result": False, "changes": {}, "comment": message}


def pillar_missing(name, message):
    """
    Succeed, changing nothing, with ``message``: what the ``kvm`` formula
    renders (one state, ``kvm-pillar``) when the minion has no ``kvm`` pillar,
    so ``state.apply kvm`` says why nothing was done (exit code 0: nothing is
    declared, and nothing on the host is wrong).
    """
    return {"name": name, "result": True, "changes": {}, "comment": message}


# --- bridges (salt_kvm.bridge) ------------------------------------------------


def bridge_present(name, netns=None, root=None, **kwargs):
    """
    A kernel bridge as declared: the keys of a ``kvm:bridges`` pillar entry
    (ports, stp, forward_delay, hello_time, max_age, ageing_time, priority,
    vlan_filtering, default_pvid, mcast_snooping, mtu, mac, addresses, gateway,
    gateway6, routes, persist, probe). Ports not declared (VM taps) are left
    alone. A declared port holding the host's addresses hands them to the
    bridge, then a probe runs; if it fails everything is rolled back.
    ``netns`` runs it in a network namespace, ``root`` redirects persisted files.

    .. code-block:: yaml

        br0:
          kvm.bridge_present:
            - ports: [eno1]
            - stp: false
            - persist: auto
            - probe: {ping: 192.0.2.1, timeout: 20s}
    """
    from salt_kvm import bridge  # pylint: disable=import-outside-toplevel

    return bridge.bridge_present(
        _session(), name, test=_test(), netns=netns, root=root, master=_bridge_master(), **kwargs
    )


def _bridge_master():
    """``(host, port)`` of this minion's Salt master (None when masterless)."""
    master = __opts__.get("master")
    if __opts__.get("file_client") == "local" or not master:
        return None
    if isinstance(master, (list, tuple)):
        master = master[0] if master else None
    return (str(master), int(__opts__.get("master_port") or 4506)) if master else None


def bridge_absent(name, force=False, netns=None, persist=None, root=None):
    """
    No bridge ``name``. Refused while VM taps are attached or while it carries
    the host's addresses or default route, unless ``force: True``. With
    ``persist`` the files salt-kvm wrote for it are removed too.

    .. code-block:: yaml

        br-old:
          kvm.bridge_absent:
            - force: false
    """
    from salt_kvm import bridge  # pylint: disable=import-outside-toplevel

    return bridge.bridge_absent(
        _session(), name, force=force, test=_test(), netns=netns, persist=persist, root=root
    )


# --- end bridges --------------------------------------------------------------

# --- libvirt networks (salt_kvm.network) --------------------------------------


def network_present(
    name,
    mode="nat",
    bridge=None,
    dev=None,
    address=None,
    address6=None,
    dhcp=None,
    dhcp6=None,
    domain=None,
    mtu=None,
    autostart=None,
    restart=False,
    force=False,
):
    """
    A libvirt network is defined as declared and running.

    The arguments are the keys of a ``kvm:networks`` pillar entry: ``mode``
    (nat, route, isolated, open, bridge), ``bridge`` (the bridge libvirt creates;
    in mode bridge the existing host bridge), ``dev`` (nat/route: the uplink),
    ``address`` / ``address6`` (the network's own address with prefix),
    ``dhcp`` / ``dhcp6`` (``{start, end, hosts: [{mac, ip, name}]}``),
    ``domain``, ``mtu``, ``autostart``.

    Static DHCP hosts (and an existing DHCP range) are changed live; other
    changes need a restart of a running network, which happens only with
    ``restart: True`` when running VMs are attached (the state fails naming
    them otherwise). Keys not given are left as they are (a bridge name
    libvirt picked is not drift).

    .. code-block:: yaml

        lab:
          kvm.network_present:
            - mode: nat
            - address: 198.51.100.1/24
            - dhcp: {start: 198.51.100.100, end: 198.51.100.200}
            - autostart: true
    """
    from salt_kvm import network  # pylint: disable=import-outside-toplevel

    return network.network_present(
        _session(),
        name,
        test=_test(),
        mode=mode,
        bridge=bridge,
        dev=dev,
        address=address,
        address6=address6,
        dhcp=dhcp,
        dhcp6=dhcp6,
        domain=domain,
        mtu=mtu,
        autostart=autostart,
        restart=restart,
        force=force,
    )


def network_absent(name, force=False):
    """
    A libvirt network does not exist (stopped and undefined). Refuses while
    running VMs are attached unless ``force: True``.

    .. code-block:: yaml

        old-lab:
          kvm.network_absent
    """
    from salt_kvm import network  # pylint: disable=import-outside-toplevel

    return network.network_absent(_session(), name, force=force, test=_test())


# --- end libvirt networks -----------------------------------------------------

# --- pools and volumes (salt_kvm.storage) -------------------------------------


def _storage():
    from salt_kvm import storage  # pylint: disable=import-outside-toplevel

    return storage


def pool_present(
    name, type=None, target=None, source=None, autostart=None, build=None, force=None, purge=None
):  # pylint: disable=redefined-builtin,unused-argument
    """
    The storage pool ``name`` is defined as declared, built when needed (an
    existing directory, filesystem, partition table or volume group is used,
    never overwritten unless ``build: force``), running, and autostart as
    declared. Drift is shown as an XML diff and fixed in place; a change of
    type or source (what holds the data) is refused unless ``force: True``.
    ``purge`` is accepted (the pillar's key) and only used by ``pool_absent``.

    .. code-block:: yaml

        images:
          kvm.pool_present:
            - type: dir
            - target: /srv/images
            - autostart: true
    """
    return _storage().pool_present(
        _session(),
        name,
        test=_test(),
        type=type,
        target=target,
        source=source,
        autostart=autostart,
        build=build,
        force=force,
    )


def pool_absent(name, purge=False, force=False):
    """
    The pool ``name`` is not defined (stopped and undefined; its storage
    stays). ``purge: True`` also deletes its volumes and storage, refused while
    a volume is in use by a VM unless ``force: True``.

    .. code-block:: yaml

        scratch:
          kvm.pool_absent:
            - purge: true
    """
    return _storage().pool_absent(_session(), name, purge=purge, force=force, test=_test())


def _volumes():
    from salt_kvm import storage_volumes  # pylint: disable=import-outside-toplevel

    return storage_volumes


def volume_present(
    name,
    pool,
    size=None,
    format=None,
    backing=None,
    source=None,
    sha256=None,
    preallocation=None,
    force=None,
):  # pylint: disable=redefined-builtin
    """
    The volume ``name`` exists in ``pool``: created (``size``, ``format``,
    ``backing``, ``preallocation``) or imported from ``source`` (a path or an
    http(s) URL, checked against ``sha256``), and at least ``size`` (it grows,
    online when a running VM uses it). Shrinking fails unless ``force: True``;
    a format change is always refused.

    .. code-block:: yaml

        web01.qcow2:
          kvm.volume_present:
            - pool: default
            - size: 20G
            - backing: base.qcow2
    """
    return _volumes().volume_present(
        _session(),
        name,
        pool=pool,
        test=_test(),
        progress=_progress(),
        size=size,
        format=format,
        backing=backing,
        source=source,
        sha256=sha256,
        preallocation=preallocation,
        force=force,
    )


def volume_absent(name, pool, force=False):
    """
    The volume ``name`` does not exist in ``pool``; refused while a VM uses it
    or another volume uses it as backing file, unless ``force: True``.

    .. code-block:: yaml

        old.qcow2:
          kvm.volume_absent:
            - pool: default
    """
    return _volumes().volume_absent(_session(), name, pool=pool, force=force, test=_test())


# --- end pools and volumes ----------------------------------------------------

# --- VMs (salt_kvm.vm) ----------------------------------------------------------


def _vm():
    from salt_kvm import vm  # pylint: disable=import-outside-toplevel

    return vm


def vm_present(name, **kwargs):
    """
    A VM as declared: the keys of a ``kvm:vms`` pillar entry (type, memory,
    max_memory, vcpus, max_vcpus, cpu, machine, firmware, disks, nics, boot,
    console, graphics, cloud_init, autostart, restart, shutdown_timeout), with
    the pillar's ``state`` given as ``run_state`` (``running``, ``stopped``,
    ``paused``: Salt reserves the argument name ``state``). The definition is
    edited in place. What a running VM can take live (disks and NICs attached
    or detached, a NIC's bridge, network or link, memory and vCPUs within
    their maximum) is applied live and persisted (``changes`` key ``live``); a
    change it can only take at a restart is written to its definition and
    reported as pending (``restart``), unless ``restart: true``. A disk entry
    with ``size`` or ``backing`` makes its volume when it is missing.

    .. code-block:: yaml

        web01:
          kvm.vm_present:
            - memory: 1G
            - vcpus: 2
            - disks: [{pool: default, volume: web01.qcow2, backing: debian12.qcow2}]
            - nics: [{bridge: br0}]
    """
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    return _vm().vm_present(_session(), name, test=_test(), **kwargs)


def vm_absent(name, purge=False):
    """
    The VM is not defined (powered off first). Its volumes are kept unless
    ``purge: true``, which deletes those no other VM uses and no other image
    is built on.

    .. code-block:: yaml

        old01:
          kvm.vm_absent:
            - purge: true
    """
    return _vm().vm_absent(_session(), name, purge=purge, test=_test())


# --- end VMs --------------------------------------------------------------------

# --- snapshots (salt_kvm.snapshot) --------------------------------------------


def _snapshot():
    from salt_kvm import snapshot  # pylint: disable=import-outside-toplevel

    return snapshot


def snapshot_present(name, snapshot, **kwargs):
    """
    Snapshot ``snapshot`` of VM ``name`` exists. Taken once, never retaken on
    a later run. Takes ``memory``, ``disk_only``, ``external``, ``quiesce``
    and ``description`` as ``kvm.snapshot_create`` does.

    .. code-block:: yaml

        before-upgrade:
          kvm.snapshot_present:
            - name: web01
            - snapshot: before-upgrade
    """
    return _snapshot().snapshot_present(_session(), name, snapshot, test=_test(), **kwargs)


def snapshot_absent(name, snapshot, children=False):
    """
    Snapshot ``snapshot`` of VM ``name`` does not exist (external snapshots
    are merged so the VM keeps its newest data). ``children: True`` also
    removes the snapshots below it.

    .. code-block:: yaml

        no-old-snapshot:
          kvm.snapshot_absent:
            - name: web01
            - snapshot: before-upgrade
    """
    return _snapshot().snapshot_absent(
        _session(), name, snapshot, children=children, test=_test(), progress=_progress()
    )


def snapshots_retained(name, **kwargs):
    """
    Rolling snapshots of VM ``name``: takes one (``prefix`` + UTC time) when
    the newest ``prefix*`` snapshot is older than ``every``, deletes those
    beyond the newest ``keep`` (with ``older_than``, only those at least that
    old), never touches snapshots without the prefix. Keys as in the
    ``kvm:snapshots`` pillar: ``every``, ``keep``, ``prefix`` (``auto-``),
    ``memory``, ``external``, ``quiesce``, ``older_than``.

    .. code-block:: yaml

        web01-snapshots:
          kvm.snapshots_retained:
            - name: web01
            - every: 1d
            - keep: 7
    """
    return _snapshot().snapshots_retained(
        _session(), name, test=_test(), progress=_progress(), **kwargs
    )


# --- end snapshots ------------------------------------------------------------


# --- every state's return: sizes for people, bytes kept -------------------------


def _for_people(func):
    """``func`` returning :func:`salt_kvm.plan.for_people` of its return.

    The wrapper shows ``func``'s signature (Salt passes a state the arguments
    its signature names) and has no ``__wrapped__`` (Salt would follow it).
    """

    def wrapper(*args, **kwargs):
        from salt_kvm import plan  # pylint: disable=import-outside-toplevel

        return plan.for_people(func(*args, **kwargs))

    wrapper.__signature__ = inspect.signature(func)
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(wrapper, attr, getattr(func, attr))
    return wrapper


if not _IMPORT_ERROR:
    for _name, _func in list(globals().items()):
        if not _name.startswith("_") and inspect.isfunction(_func) and _func.__module__ == __name__:
            globals()[_name] = _for_people(_func)
    del _name, _func
