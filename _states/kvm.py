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

# --- end libvirt networks -----------------------------------------------------

# --- pools and volumes (salt_kvm.storage) -------------------------------------

# --- end pools and volumes ----------------------------------------------------

# --- snapshots (salt_kvm.snapshot) --------------------------------------------

# --- end snapshots ------------------------------------------------------------
