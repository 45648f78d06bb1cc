"""Names and paths: Linux interface names, libvirt object names, volume names, hosts."""

from __future__ import annotations

from salt_kvm.schema.fields import Str, UrlOrPath

#: Linux interface names: at most 15 bytes, no '/', ':' or whitespace (the kernel's dev_valid_name),
#: and not starting with '.' or '-' (never read as a path or an option)
IFNAME = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,14}",
    max_len=15,
    what="an interface name (15 characters of A-Z a-z 0-9 _ . + -, not starting with . or -)",
)
#: libvirt object names (networks, pools, VMs)
OBJNAME = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.+-]*",
    max_len=64,
    what="a name (letters, digits, _ . + -, not starting with . or -)",
)
#: volume names: a file in the pool, never a path
VOLNAME = Str(
    r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.+:@-]*",
    max_len=200,
    what="a volume name (no '/', no '..', letters, digits, _ . + : @ -)",
)
ABSPATH = Str(r"/(?!.*(^|/)\.\.(/|$))[^\0\n]*", max_len=4096, what="an absolute path without '..'")
#: a TCP/UDP port, 1-65535
_PORT = r"(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
HOSTNAME = Str(
    r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:"
    + _PORT
    + r")?|\[[0-9a-fA-F:]+\](:"
    + _PORT
    + r")?",
    max_len=253,
    what="a host name or address, optionally with :port (1-65535)",
)
SNAPNAME = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.:+@-]*",
    max_len=128,
    what="a snapshot name (letters, digits, _ . : + @ -)",
)
PREFIX = Str(
    r"[A-Za-z0-9_][A-Za-z0-9_.:+@-]*",
    max_len=64,
    what="a name prefix (letters, digits, _ . : + @ -)",
)
SHA256 = Str(r"[0-9a-fA-F]{64}", max_len=64, what="a sha256 hex digest (64 hex digits)")


URL_OR_PATH = UrlOrPath(
    r"(https?://[^\s]+|/(?!.*(^|/)\.\.(/|$))[^\0\n]*)",
    max_len=4096,
    what="an absolute path or an http(s) URL",
)
