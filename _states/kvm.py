"""
State module ``kvm``: declare bridges, libvirt networks, storage pools and
volumes, and snapshots of KVM hosts.

Every state is idempotent, reports ``changes`` as ``{key: {old, new}}``,
predicts them exactly under ``test=True`` (result None, nothing changed), reads
back and verifies after applying, and never destroys data by implication
(``force: True`` / ``purge: True`` where a change would). The work is done by
the ``salt_kvm`` library through one state engine (``salt_kvm.plan``).
"""

try:
    from salt_kvm import glue as _glue

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - shown by __virtual__
    _IMPORT_ERROR = str(_exc)

__virtualname__ = "kvm"


def __virtual__():
    if _IMPORT_ERROR:
        return False, f"kvm: the salt_kvm library is missing ({_IMPORT_ERROR}); install salt-kvm with pip / salt-pip"
    return _glue.virtual(__virtualname__)


def _session():
    """The run's shared connection and listings (one per state.apply)."""
    return _glue.session(__context__, __salt__["config.get"])


def _test():
    return bool(__opts__.get("test"))


# --- bridges (salt_kvm.bridge) ------------------------------------------------

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

    Static DHCP hosts are changed live; other changes need a restart of a
    running network, which happens only with ``restart: True`` when running
    VMs are attached (the state fails naming them otherwise). Keys not given
    are left as they are (a bridge name libvirt picked is not drift).

    .. code-block:: yaml

        lab:
          kvm.network_present:
            - mode: nat
            - address: 198.51.100.1/24
            - dhcp: {start: 198.51.100.100, end: 198.51.100.200}
            - autostart: true
    """
    from salt_kvm import network  # pylint: disable=import-outside-toplevel

    return network.present(_session(), name, test=_test(), mode=mode, bridge=bridge, dev=dev, address=address, address6=address6, dhcp=dhcp, dhcp6=dhcp6, domain=domain, mtu=mtu, autostart=autostart, restart=restart, force=force)


def network_absent(name, force=False):
    """
    A libvirt network does not exist (stopped and undefined). Refuses while
    running VMs are attached unless ``force: True``.

    .. code-block:: yaml

        old-lab:
          kvm.network_absent
    """
    from salt_kvm import network  # pylint: disable=import-outside-toplevel

    return network.absent(_session(), name, force=force, test=_test())

# --- end libvirt networks -----------------------------------------------------

# --- pools and volumes (salt_kvm.storage) -------------------------------------


def _storage():
    from salt_kvm import storage  # pylint: disable=import-outside-toplevel

    return storage


def pool_present(name, type=None, target=None, source=None, autostart=None, build=None, force=None):  # pylint: disable=redefined-builtin
    """
    The storage pool ``name`` is defined as declared, built when needed (an
    existing directory, filesystem, partition table or volume group is used,
    never overwritten unless ``build: force``), running, and autostart as
    declared. Drift is shown as an XML diff and fixed in place; a change of
    type or source (what holds the data) is refused unless ``force: True``.

    .. code-block:: yaml

        images:
          kvm.pool_present:
            - type: dir
            - target: /srv/images
            - autostart: true
    """
    return _storage().pool_present(_session(), name, test=_test(), type=type, target=target, source=source, autostart=autostart, build=build, force=force)


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


# --- end pools and volumes ----------------------------------------------------

# --- snapshots (salt_kvm.snapshot) --------------------------------------------

# --- end snapshots ------------------------------------------------------------
