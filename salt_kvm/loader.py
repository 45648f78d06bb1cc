"""The ``salt.loader`` entry point: where Salt finds the ``kvm`` loader modules.

The loader modules exist once in the repository (``_modules/kvm.py``, ...); the
wheel installs the same files as ``salt_kvm/loader_modules`` and so on, which is
what this entry point hands to Salt. When ``salt_kvm`` is imported from a
checkout (tests, development), the checkout's own ``_modules/`` and so on are
used instead: still the one copy. ``SALT_KVM_NO_ENTRY_POINT=1`` turns it off,
which the tests use to prove that the file-root way (``saltutil.sync_all``)
works on its own.
"""

from __future__ import annotations

import os
from typing import Optional

#: ext_type -> (directory inside the installed package, directory in a checkout)
_KINDS = {
    "modules": ("loader_modules", "_modules"),
    "states": ("loader_states", "_states"),
    "grains": ("loader_grains", "_grains"),
    "runners": ("loader_runners", "_runners"),
    # Salt's loader asks for outputters as ext_type "output" (salt.loader.outputters)
    "output": ("loader_output", "_output"),
}


def get_loader_dirs() -> dict[str, list[str]]:
    """Return ``{ext_type: [directory]}`` for Salt's loader."""
    if os.environ.get("SALT_KVM_NO_ENTRY_POINT"):
        return {}
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(here)
    dirs = {}
    for kind, (installed, in_checkout) in _KINDS.items():
        # an installed wheel, or (when salt_kvm is imported from a checkout) the checkout
        for path in (os.path.join(here, installed), os.path.join(checkout, in_checkout)):
            if os.path.isfile(os.path.join(path, "kvm.py")):
                dirs[kind] = [path]
                break
    return dirs


def formula_root() -> Optional[str]:
    """The Salt file root that holds the ``kvm`` formula (``kvm/init.sls``).

    In an installed wheel or sdist that is ``<site-packages>/salt_kvm/file_root``
    (the formula ships as package data); imported from a checkout it is the
    checkout itself, which is a file root as it stands. ``None`` if neither
    holds the formula.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "file_root"), os.path.dirname(here)):
        if os.path.isfile(os.path.join(path, "kvm", "init.sls")):
            return path
    return None
