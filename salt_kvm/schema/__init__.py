"""The ``kvm`` pillar: its schema and validation with exact error paths.

Every key is known, every value typed; unknown keys are rejected with a
suggestion; each error names its path
(``kvm:pools:default:volumes:ubuntu.qcow2:size: '20X' is not a size``).
:func:`validate_pillar` returns the normalised tree (sizes in bytes, durations
in seconds, ports as dicts) or raises :class:`~salt_kvm.errors.InvalidInput`
listing every error found. The state modules validate their arguments with the
same record schemas (:func:`validate`), so a bad value is refused the same way
whether it comes from pillar or from an SLS.

The schema is a package: :mod:`~salt_kvm.schema.fields` is the generic field
library (``Record``, ``Map``, ``Str`` ...), and one module per section holds
its records (:mod:`~salt_kvm.schema.bridges`, ``networks``, ``storage``,
``snapshots``, ``vms``, and ``pillar`` for the whole tree). Everything is
re-exported here, so ``schema.BRIDGE`` and ``schema.validate_pillar`` are the
names to use.
"""

from __future__ import annotations

from salt_kvm.errors import InvalidInput
from salt_kvm.schema.bridges import (
    BRIDGE,
    PORT,
    PORT_VLANS,
    PROBE,
    ROUTE,
    Ports,
)
from salt_kvm.schema.fields import (
    _INVALID,
    Address,
    Any,
    Bool,
    Duration,
    Enum,
    Errors,
    Field,
    Int,
    Interface,
    List,
    Mac,
    Map,
    MappingOrText,
    Network,
    Number,
    PortOrAuto,
    Record,
    Secret,
    Size,
    Str,
    UrlOrPath,
    VlanList,
    _join,
    _show,
    _suggest,
    describe,
    validate,
)
from salt_kvm.schema.names import (
    _PORT,
    ABSPATH,
    HOSTNAME,
    IFNAME,
    OBJNAME,
    PREFIX,
    SHA256,
    SNAPNAME,
    URL_OR_PATH,
    VOLNAME,
)
from salt_kvm.schema.networks import (
    DHCP,
    DHCP_HOST,
    NETWORK,
)
from salt_kvm.schema.pillar import (
    CONNECTION,
    PILLAR,
    PROGRESS,
    validate_args,
    validate_pillar,
)
from salt_kvm.schema.snapshots import (
    RETENTION,
    SNAPSHOT,
    SNAPSHOT_PRUNE,
)
from salt_kvm.schema.storage import (
    _POOL_NEEDS,
    AUTH,
    POOL,
    POOL_TYPES,
    SOURCE,
    VOLUME,
    check_volume,
)
from salt_kvm.schema.vms import (
    VM,
    VM_BOOT,
    VM_CLOUD_INIT,
    VM_CONSOLE,
    VM_DISK,
    VM_GRAPHICS,
    VM_NIC,
)

__all__ = [
    "InvalidInput",
    "_INVALID",
    "Errors",
    "_join",
    "_show",
    "Field",
    "Any",
    "Bool",
    "Int",
    "Number",
    "Str",
    "Secret",
    "Enum",
    "Size",
    "Duration",
    "Address",
    "Interface",
    "Network",
    "Mac",
    "VlanList",
    "List",
    "Map",
    "Record",
    "_suggest",
    "describe",
    "UrlOrPath",
    "MappingOrText",
    "PortOrAuto",
    "validate",
    "IFNAME",
    "OBJNAME",
    "VOLNAME",
    "ABSPATH",
    "_PORT",
    "HOSTNAME",
    "SNAPNAME",
    "PREFIX",
    "SHA256",
    "URL_OR_PATH",
    "PORT_VLANS",
    "PORT",
    "Ports",
    "ROUTE",
    "PROBE",
    "BRIDGE",
    "DHCP_HOST",
    "DHCP",
    "NETWORK",
    "POOL_TYPES",
    "AUTH",
    "SOURCE",
    "VOLUME",
    "check_volume",
    "_POOL_NEEDS",
    "POOL",
    "RETENTION",
    "SNAPSHOT",
    "SNAPSHOT_PRUNE",
    "VM_DISK",
    "VM_NIC",
    "VM_BOOT",
    "VM_CONSOLE",
    "VM_CLOUD_INIT",
    "VM_GRAPHICS",
    "VM",
    "CONNECTION",
    "PROGRESS",
    "PILLAR",
    "validate_pillar",
    "validate_args",
]
