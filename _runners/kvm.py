"""
Runner ``kvm``: the KVM fleet from the master.

Salt is the transport: these functions publish ordinary jobs to the targeted
minions (``kvm.host_report``, ``state.apply kvm test=True``,
``kvm.snapshot_vms``, ``kvm.revert_vms``) and collect the returns; the ones
that change something run in batches (``batch: 10%`` by default). The work is
in ``salt_kvm.fleet``.

.. code-block:: bash

    salt-run kvm.report                       # every host, as tables
    salt-run kvm.report 'G@kvm:hypervisor:kvm' tgt_type=compound --out=json
    salt-run kvm.snapshot tgt='*' vms='web-*' name=pre-upgrade
    salt-run kvm.revert tgt='*' vms='web-*' name=pre-upgrade batch=25%
    salt-run kvm.formula_root                 # the file_roots entry for the kvm formula
"""

import logging

try:
    from salt_kvm import fleet as _fleet
    from salt_kvm import loader as _loader

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - shown by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "kvm"


def __virtual__():
    if _IMPORT_ERROR:
        return (
            False,
            f"kvm runner: the salt_kvm library is missing ({_IMPORT_ERROR}); "
            "install salt-kvm with pip",
        )
    return __virtualname__


def formula_root():
    """
    The directory to add to the master's ``file_roots`` so that
    ``state.apply kvm`` finds the ``kvm`` formula that comes with the installed
    package (``<site-packages>/salt_kvm/file_root``, holding ``kvm/*.sls``).
    Install the package on the master for it (``salt-pip install --no-deps``
    of the wheel is enough: the runner needs no libvirt).

    CLI Example:

    .. code-block:: bash

        salt-run kvm.formula_root
    """
    path = _loader.formula_root()
    if path is None:
        from salt.exceptions import CommandExecutionError  # pylint: disable=import-outside-toplevel

        raise CommandExecutionError(
            "the kvm formula is not in this salt-kvm installation (no kvm/init.sls beside salt_kvm)"
        )
    return path


def _client():
    import salt.client  # pylint: disable=import-outside-toplevel

    return salt.client.get_local_client(__opts__["conf_file"])


def _expected(tgt, tgt_type):
    """The minions a target matches (those with accepted keys)."""
    import salt.utils.minions  # pylint: disable=import-outside-toplevel

    try:
        return (
            salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type).get("minions", [])
        )
    except Exception:  # pylint: disable=broad-except
        log.debug("cannot resolve target %r (%s)", tgt, tgt_type, exc_info=True)
        return None


def _fail(result):
    if not result:
        __context__["retcode"] = 1


def _text_wanted(table):
    if table is not None:
        return bool(table)
    # a table for people at the CLI; data for --out=json/yaml and for callers
    # (orchestration, saltutil.runner, the Python API)
    cli = str(__opts__.get("__cli") or "").replace("_", "-")
    return "salt-run" in cli and __opts__.get("output") in (None, "", "nested", "txt")


def report(tgt="*", tgt_type="glob", drift=True, table=None, timeout=120):
    """
    Per host: kernel bridges, libvirt networks, pool usage (capacity, % used),
    volume counts, VMs with their snapshot counts and oldest snapshot's age,
    and the drift against its pillar (what ``state.apply kvm test=True`` would
    change, or the error that stops it). Printed as tables at the CLI; the data
    with ``--out=json`` (or ``table=False``).

    CLI Example:

    .. code-block:: bash

        salt-run kvm.report
        salt-run kvm.report 'hv*' drift=False
        salt-run kvm.report --out=json
    """
    try:
        data = _fleet.report(_client(), tgt, tgt_type=tgt_type, drift=drift, timeout=timeout)
    except _fleet.KvmError as exc:
        _fail(False)
        return str(exc)
    failed = bool(data["summary"]["failed"])
    _fail(not failed)
    if _text_wanted(table):
        return _fleet.format_report(data)
    data["retcode"] = 1 if failed else 0
    return data


def snapshot(
    tgt="*", vms=None, name=None, tgt_type="glob", batch="10%", snapshot=None, timeout=300, **kwargs
):  # pylint: disable=redefined-outer-name
    """
    Snapshot the VMs matching ``vms`` (names or glob patterns, a list or
    comma-separated) on every targeted host, ``batch`` hosts at a time (Salt's
    batch mode), with ``kvm.snapshot_create``. ``name`` is the snapshot's name
    (default ``fleet-YYYYmmdd-HHMMSS``, one for the whole run; ``snapshot`` is
    an alias for orchestration, where ``name`` is taken); other keyword
    arguments (``memory``, ``disk_only``, ``description`` ...) go to
    ``kvm.snapshot_create``. A VM that already has the snapshot is left alone.

    Returns ``{result, name, vms: {"host/vm": {result, changed, return | comment}},
    hosts: {host: {result, vms | comment}}, retcode}``; fails (exit code 1) if
    any VM or targeted host failed.

    CLI Example:

    .. code-block:: bash

        salt-run kvm.snapshot tgt='*' vms='web-*' name=pre-upgrade
        salt-run kvm.snapshot tgt='roles:db' tgt_type=pillar vms='*' name=nightly batch=5
    """
    name = snapshot or name or _fleet.default_snapshot_name()
    return _vm_action(tgt, vms, "kvm.snapshot_vms", [name], kwargs, tgt_type, batch, timeout, name)


def revert(tgt="*", vms=None, name=None, tgt_type="glob", batch="10%", snapshot=None, timeout=300):  # pylint: disable=redefined-outer-name
    """
    Revert the VMs matching ``vms`` on every targeted host to snapshot
    ``name`` (alias ``snapshot``), ``batch`` hosts at a time, with
    ``kvm.snapshot_revert``. Returns the same shape as ``kvm.snapshot``;
    fails if any VM (one without the snapshot, too) or targeted host failed.

    CLI Example:

    .. code-block:: bash

        salt-run kvm.revert tgt='*' vms='web-*' name=pre-upgrade
    """
    name = snapshot or name
    return _vm_action(tgt, vms, "kvm.revert_vms", [name], None, tgt_type, batch, timeout, name)


def _vm_action(tgt, vms, fun, args, kwargs, tgt_type, batch, timeout, name):
    try:
        if not name:
            raise _fleet.InvalidInput("name", "is required: the snapshot to revert to")
        ret = _fleet.vm_action(
            _client(),
            tgt,
            vms,
            fun,
            args=args,
            kwargs=kwargs,
            tgt_type=tgt_type,
            batch=batch,
            timeout=timeout,
            expected=_expected(tgt, tgt_type),
        )
    except _fleet.KvmError as exc:
        _fail(False)
        return {"result": False, "comment": str(exc), "retcode": 1}
    _fail(ret["result"])
    return dict(ret, name=name, retcode=0 if ret["result"] else 1)
