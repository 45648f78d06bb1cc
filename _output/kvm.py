"""
Outputter ``kvm``: tables and trees for people.

``kvm.bridge_list`` prints like ``brctl show``; ``kvm.pool_list``,
``kvm.volume_list``, ``kvm.network_list``, ``kvm.snapshot_list``,
``kvm.network_leases`` and ``kvm.bridge_fdb`` as aligned tables with binary
sizes; ``kvm.snapshot_tree`` as a tree with the current snapshot marked; the
``*_show`` functions and ``kvm.host_info`` as ``FIELD VALUE`` lines (with a
table for each list of records); the ``*_dumpxml`` functions as the XML
itself. Each minion's text sits under its ``minion:`` line. Anything else
goes to Salt's ``nested`` outputter (state runs to ``highstate``).
``--out=json`` still gives the plain data. The work is in ``salt_kvm.output``.

.. code-block:: bash

    salt '*' kvm.pool_list --out=kvm
    salt '*' kvm.volume_show default web01.qcow2 --out=kvm
    salt-call kvm.snapshot_tree web01 --out=kvm
"""

try:
    from salt_kvm import output as _output

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - shown by __virtual__
    _IMPORT_ERROR = str(_exc)

__virtualname__ = "kvm"


def __virtual__():
    if _IMPORT_ERROR:
        return (
            False,
            f"kvm outputter: the salt_kvm library is missing ({_IMPORT_ERROR}); install salt-kvm "
            "with pip",
        )
    return __virtualname__


def output(data, **kwargs):
    """Render ``data`` (``{minion_id: return}``) as text; colour as Salt's ``color`` option says."""

    def fallback(rest):
        name = "highstate" if _output.is_state_return(rest) else "nested"
        return __salt__[name](rest, **kwargs)  # noqa: F821 - Salt injects __salt__ (the outputters)

    opts = __opts__  # noqa: F821 - Salt injects __opts__
    return _output.render(
        data, color=bool(opts.get("color")), fun=opts.get("fun"), fallback=fallback
    )
