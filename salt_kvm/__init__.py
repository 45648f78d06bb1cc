"""salt-kvm: the library behind the ``kvm`` Salt execution and state modules.

Nothing in this package touches Salt's dunders (``__salt__``, ``__opts__``,
``__context__``, ``__pillar__``): every function takes what it needs as
arguments, so it can be unit-tested alone. The loader modules in ``_modules/``,
``_states/``, ``_grains/`` and ``_runners/`` are thin wrappers around it.
"""

__version__ = "0.1.0"
