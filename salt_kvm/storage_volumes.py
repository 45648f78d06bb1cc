"""Storage volumes: the ``kvm.volume_*`` functions and the volume states.

Volumes are files (``raw``, ``qcow2``, ``vmdk``), logical volumes or partitions
in a pool. Nothing here loses data by implication: a volume only grows (a
shrink needs ``force``), its format is never changed in place (clone it to
convert), and a volume that a VM uses, or that backs another volume, is not
deleted or wiped unless forced.

Imports (``volume_import`` and ``volume_present`` with ``source``) stream a
local file or an http(s) URL into the volume through libvirt, computing its
sha256 on the way; a mismatch removes the volume again. The digest of an
imported file volume is remembered in an extended attribute
(``user.salt_kvm.sha256``, with the file's size and mtime) so that a later run
does not read the image again to know it is unchanged.

A download that ends before its ``Content-Length`` (or fails while read) is
refused and the partial volume removed. A password in a URL
(``https://user:pw@host/img``) is sent as HTTP Basic auth, to that origin
only, and shown everywhere as ``https://user:***@host/img`` (:func:`redact`);
redirects are followed to http(s) only.

The memoised volume listing of a pool (``storage:vols:<pool>``) is patched
after each successful write (the one volume's entry updated or dropped), so
a run that creates many volumes reads the pool's listing once; it is dropped
whole only after a failed write.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import subprocess  # nosec B404  # fixed argument lists, never a shell
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, Optional, cast

from salt_kvm import depends, journal, plan, pool_types, schema, units
from salt_kvm import progress as progress_mod
from salt_kvm import storage as pools_mod
from salt_kvm.conn import libvirt, libvirt_errors, libvirt_message, memo_key
from salt_kvm.errors import InvalidInput, KvmError, NotFound, Refused
from salt_kvm.plan import Changes, Plan, Undo
from salt_kvm.xml import storage as sxml
from salt_kvm.xml.base import parse

log = logging.getLogger(__name__)

XATTR = "user.salt_kvm.sha256"
CHUNK = 1024 * 1024
#: file-backed pool types (volumes are image files with a format): rows of the pool type table
FILE_POOLS = pool_types.FILE_BACKED
#: pool types that round volume sizes up (LVM extents, partition alignment)
ROUNDING = {t.name: t.size_rounding for t in pool_types.TYPES if t.size_rounding}
PREALLOC_METADATA = 1  # VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
BLOCK_RESIZE_BYTES = 1  # VIR_DOMAIN_BLOCK_RESIZE_BYTES
RESIZE_SHRINK = 4  # VIR_STORAGE_VOL_RESIZE_SHRINK


def _names(pool, name=None):
    schema.validate(schema.OBJNAME, pool, "pool")
    if name is not None:
        schema.validate(schema.VOLNAME, name, "name")


# --- listings ----------------------------------------------------------------------


def _vols_key(pool: str) -> str:
    return memo_key("storage", "vols", pool)


def _invalidate(session, pool):
    """Forget the listing of one pool's volumes (after a failed write to it: what is there is
    unknown)."""
    session.invalidate(_vols_key(pool))


@contextlib.contextmanager
def _writing(
    session: Any, pool: str, what: str, undo: Optional[Callable[[], Any]] = None
) -> Iterator[None]:
    """Around a libvirt write to ``pool`` (create, clone, resize, wipe, delete a volume): when
    libvirt fails, what the pool holds is unknown, so its volume listing is forgotten, ``undo``
    runs (drop a journal mark, let the pool read its volumes again), and the error is raised as
    ``KvmError("<what>: <libvirt's message>")``, as :func:`salt_kvm.conn.libvirt_errors` does."""
    try:
        yield
    except libvirt.libvirtError as exc:  # raw: only libvirt's own failure makes it unknown
        _invalidate(session, pool)
        if undo is not None:
            undo()
        raise KvmError(f"{what}: {libvirt_message(exc)}") from None


def _patch(session, pool, name, vol=None):
    """After a successful write: update volume ``name`` in the memoised listing of
    ``pool`` (``vol``), or drop it (``vol`` None, after a delete), instead of
    reloading the whole listing (every volume's XML) at the next read."""
    listing = session.cache.get(_vols_key(pool))
    if listing is None:
        return
    if vol is None:
        listing.pop(name, None)
        return
    try:
        listing[name] = {"obj": vol, "xml": vol.XMLDesc(0)}
    except libvirt.libvirtError:  # raw: the entry is dropped; the next read lists the pool again
        _invalidate(session, pool)


def _pool_entry(session, pool):
    entry = pools_mod.lookup_pool(session, pool)
    if not entry["active"]:
        raise KvmError(
            f"pool '{pool}' is not running (start it with kvm.pool_start or kvm.pool_present)"
        )
    return entry


def volumes(session: Any, pool: str) -> dict[str, dict[str, Any]]:
    """``{name: {obj, xml}}`` of a running pool, once per run."""

    def load():
        entry = _pool_entry(session, pool)
        out = {}
        with libvirt_errors(f"pool '{pool}'"):
            for vol in entry["obj"].listAllVolumes(0):
                with contextlib.suppress(libvirt.libvirtError):
                    out[vol.name()] = {"obj": vol, "xml": vol.XMLDesc(0)}
        return out

    return session.memo(_vols_key(pool), load)


def _pool_model(session, pool):
    """The parsed definition of ``pool`` (once per run: forgotten with the pool listing)."""
    return session.memo(
        memo_key("storage", "model", pool),
        lambda: sxml.Pool(pools_mod.lookup_pool(session, pool)["xml"]),
    )


def _pool_type(session, pool):
    return _pool_model(session, pool).type


def _mark(session, pool, name):
    """The :mod:`salt_kvm.journal` key of volume ``name`` of ``pool``."""
    return journal.volume_key(_pool_model(session, pool).uuid, name)


#: image formats libvirt creates with qemu-img (sizes in whole KiB)
SECTOR_FORMATS = ("qcow2", "vmdk", "qed", "vdi", "vpc", "vhdx")


def stored_size(ptype: str, fmt: Optional[str], size: Optional[int]) -> Optional[int]:
    """``size`` as the pool will store it: file images in an image format are rounded
    up to a whole KiB (libvirt hands qemu-img the size in KiB: ``size: 1.1G`` of a qcow2
    is 1181116416 bytes, ``3.3M`` is 3461120); LVs, partitions and RBD images round up
    further, which :data:`ROUNDING` tolerates. Raw files keep the exact size."""
    if size is None:
        return None
    if ptype in FILE_POOLS and (fmt or "qcow2") in SECTOR_FORMATS:
        return -(-int(size) // 1024) * 1024
    return int(size)


def _info(model):
    return {
        "name": model.name,
        "path": model.path,
        "format": model.format,
        "capacity": model.capacity,
        "allocation": model.allocation,
        "backing": model.backing_path,
    }


def _lookup(session, pool, name):
    vols = volumes(session, pool)
    if name not in vols:
        raise NotFound(f"volume '{name}' does not exist in pool '{pool}'")
    return vols[name]


def identity_of(session: Any, pool: str, name: str) -> Any:
    """The identity (see :mod:`salt_kvm.depends`) of volume ``name`` of ``pool``."""
    # pylint: disable-next=protected-access
    return depends._volume_identity(
        _pool_type(session, pool), sxml.Volume(_lookup(session, pool, name)["xml"]).path
    )


def backing_chain(path: str) -> list[dict[str, Any]]:
    """``[{path, format, virtual_size}]`` from the image down to its base (``qemu-img info``)."""
    if not shutil.which("qemu-img") or not os.path.exists(path):
        return []
    proc = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        return []
    data = json.loads(proc.stdout)
    data = data if isinstance(data, list) else [data]
    return [
        {
            "path": d.get("filename"),
            "format": d.get("format"),
            "virtual_size": d.get("virtual-size"),
        }
        for d in data
    ]


# --- execution functions ---------------------------------------------------------------


def volume_list(session: Any, pool: str) -> dict[str, dict[str, Any]]:
    """``{name: {path, format, capacity, allocation, backing}}`` of a pool's volumes."""
    _names(pool)
    return {
        name: _info(sxml.Volume(v["xml"])) for name, v in sorted(volumes(session, pool).items())
    }


def volume_show(session: Any, pool: str, name: str) -> dict[str, Any]:
    """One volume: format, sizes, path, backing chain, VMs using it, volumes it backs."""
    _names(pool, name)
    vol = _lookup(session, pool, name)
    info = _info(sxml.Volume(vol["xml"]))
    info["pool"] = pool
    info["backing_chain"] = (
        backing_chain(info["path"]) if _pool_type(session, pool) in FILE_POOLS else []
    )
    index = depends.scan(session)
    ident = identity_of(session, pool, name)
    info["used_by"] = index.used_by(ident)
    info["backing_of"] = index.backing_of(ident, exclude=[ident])
    record = interrupted(session, pool, name)
    if record:
        info["incomplete"] = f"its {record['op']} was interrupted at {record['at']}"
    return info


def _resolve_backing(session, pool, backing):
    """A backing volume name (same pool) or absolute path -> ``(path, format)``."""
    if backing.startswith("/"):
        schema.validate(schema.ABSPATH, backing, "backing")
        for vols_pool, entry in pools_mod.pools(session).items():
            if entry["active"]:
                for vol in volumes(session, vols_pool).values():
                    model = sxml.Volume(vol["xml"])
                    if model.path == backing:
                        return backing, model.format, model.capacity
        chain = backing_chain(backing)
        if not chain:
            raise NotFound(f"backing file {backing} does not exist")
        return backing, chain[0]["format"], chain[0]["virtual_size"]
    schema.validate(schema.VOLNAME, backing, "backing")
    vols = volumes(session, pool)
    if backing not in vols:
        raise NotFound(f"backing volume '{backing}' does not exist in pool '{pool}'")
    model = sxml.Volume(vols[backing]["xml"])
    return model.path, model.format, model.capacity


def _prealloc(fmt, preallocation, capacity):
    """``(allocation, flags)`` for libvirt's createXML."""
    if preallocation in (None, False, "off"):
        return 0, 0
    if preallocation == "metadata":
        return (0, PREALLOC_METADATA) if fmt == "qcow2" else (0, 0)
    # True, falloc, full: every byte allocated now
    return capacity, (PREALLOC_METADATA if fmt == "qcow2" else 0)


def interrupted(session: Any, pool: str, name: str) -> Optional[dict[str, Any]]:
    """The journal record of an interrupted import, clone or wipe of the volume, or None."""
    vol = volumes(session, pool).get(name)
    if vol is None:
        return None
    return journal.incomplete(_mark(session, pool, name), sxml.Volume(vol["xml"]).path)


def _must_be_new(session, pool, name, redo=None):
    """Refuse to make volume ``name`` over an existing one, but for one that an interrupted
    ``redo`` (import, clone) left behind: that one is deleted (if nothing uses it) and made
    again."""
    if name not in volumes(session, pool):
        return
    record = interrupted(session, pool, name)
    if record and record["op"] == redo:
        _guard_in_use(session, pool, name, False, f"redoing the interrupted {redo} of")
        log.warning(
            "volume %s/%s: its %s was interrupted at %s; doing it again",
            pool,
            name,
            redo,
            record["at"],
        )
        _delete(session, pool, name)
        return
    hint = (
        f" (its {record['op']} was interrupted at {record['at']}: run it again or delete the "
        "volume)"
        if record
        else ""
    )
    raise KvmError(f"volume '{name}' already exists in pool '{pool}'{hint}")


def volume_create(  # pylint: disable=redefined-builtin
    session: Any,
    pool: str,
    name: str,
    *,
    size: Any = None,
    format: Optional[str] = None,
    backing: Optional[str] = None,
    preallocation: Any = None,
) -> dict[str, Any]:
    """Create a volume (``raw``/``qcow2``/``vmdk``) of ``size``; ``backing`` is a volume of the
    pool or a path."""
    _names(pool, name)
    spec = schema.validate(
        schema.VOLUME,
        {
            k: v
            for k, v in {
                "size": size,
                "format": format,
                "backing": backing,
                "preallocation": preallocation,
            }.items()
            if v is not None
        },
        name,
    )
    _must_be_new(session, pool, name)
    _create(session, pool, name, spec)
    return volume_show(session, pool, name)


def _create(session, pool, name, spec):
    ptype = _pool_type(session, pool)
    fmt = spec.get("format")
    if fmt is None and ptype in FILE_POOLS:
        fmt = "qcow2"
    if ptype not in FILE_POOLS and fmt not in (None, "raw"):
        raise InvalidInput(f"{name}:format", f"a {ptype} pool holds raw volumes only")
    backing_path = backing_format = None
    capacity = spec.get("size")
    if spec.get("backing"):
        if fmt == "raw":
            raise InvalidInput(
                f"{name}:backing", "a raw volume cannot have a backing file (use qcow2)"
            )
        backing_path, backing_format, backing_size = _resolve_backing(
            session, pool, spec["backing"]
        )
        if capacity is None:
            capacity = backing_size
    if capacity is None:
        raise InvalidInput(f"{name}:size", "is required (or give backing)")
    capacity = stored_size(ptype, fmt, capacity)
    allocation, flags = _prealloc(fmt, spec.get("preallocation"), capacity)
    if ptype not in FILE_POOLS:
        allocation, flags = (
            capacity,
            0,
        )  # an LV or partition is allocated whole (no sparse snapshot LVs)
    xml = sxml.Volume.build(
        name,
        capacity,
        fmt=fmt if ptype in FILE_POOLS else None,
        allocation=allocation,
        backing_path=backing_path,
        backing_format=backing_format,
    )
    with _writing(session, pool, f"creating volume '{name}' in pool '{pool}'"):
        vol = _pool_entry(session, pool)["obj"].createXML(xml.to_xml(), flags)
    _patch(session, pool, name, vol)


# --- import ---------------------------------------------------------------------------


#: where a download without a Content-Length is spooled (its length must be known to libvirt first)
SPOOL_DIR = "/var/tmp"  # nosec B108  # only for tempfile.TemporaryFile: O_EXCL, random name, unlinked at once
_URL_HEAD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#]*)")


def _userinfo(url):
    """``(url without userinfo, userinfo)`` of a URL; ``userinfo`` is None when it has none."""
    match = _URL_HEAD.match(url) if isinstance(url, str) else None
    if not match or "@" not in match.group(2):
        return url, None
    userinfo, _, host = match.group(2).rpartition("@")
    return f"{match.group(1)}{host}{url[match.end() :]}", userinfo


def redact(source: Any) -> Any:
    """``source`` as it may be shown: the password of a URL's userinfo replaced by ``***``.

    ``http://user:secret@host/img`` is shown as ``http://user:***@host/img``; a
    userinfo without a colon (``http://TOKEN@host/img``) is taken for a token and
    shown as ``http://***@host/img``. A path or a URL without userinfo is shown as is.
    """
    bare, userinfo = _userinfo(source)
    if userinfo is None:
        return source
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    scheme, rest = bare.split("://", 1)
    return f"{scheme}://{shown}@{rest}"


def _scrub(text, source):
    """``text`` (an exception's message) without the userinfo of ``source`` in any form."""
    text = str(text)
    _bare, userinfo = _userinfo(source)
    if userinfo:
        user, colon, password = userinfo.partition(":")
        hidden = {userinfo, urllib.parse.unquote(userinfo)}
        hidden |= (
            {password, urllib.parse.unquote(password)}
            if colon
            else {user, urllib.parse.unquote(user)}
        )
        for value in sorted((h for h in hidden if h), key=len, reverse=True):
            text = text.replace(value, "***")
    return text


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http and https only (urllib also follows ``ftp://``), and
    sends the credentials along only to the same scheme, host and port."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        target = urllib.parse.urlsplit(newurl)
        if target.scheme.lower() not in ("http", "https"):
            raise KvmError(
                f"redirected to {redact(newurl)}: only http and https redirects are followed"
            )
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        origin = urllib.parse.urlsplit(req.full_url)
        if (
            new is not None
            and auth
            and (target.scheme.lower(), target.hostname, target.port)
            == (origin.scheme.lower(), origin.hostname, origin.port)
        ):
            new.add_unredirected_header("Authorization", auth)
        return new


def _request(source):
    """The ``urllib`` request of ``source``: URL userinfo becomes HTTP Basic auth
    (urllib itself would take ``user:password@host`` for a host name)."""
    bare, userinfo = _userinfo(source)
    req = urllib.request.Request(bare, headers={"User-Agent": "salt-kvm"})
    if userinfo is not None:
        user, _colon, password = userinfo.partition(":")
        token = base64.b64encode(
            f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
        ).decode()
        req.add_unredirected_header("Authorization", f"Basic {token}")
    return req


def _interrupted(shown, sent, length, why=None):
    verb = "download of" if shown.startswith(("http://", "https://")) else "reading"
    return KvmError(
        f"{verb} {shown} interrupted after {sent} of {length} bytes{f': {why}' if why else ''}"
    )


def _open_source(source):
    """``(readable, length, shown)``; http(s) URLs without a Content-Length are spooled to a temp
    file.

    ``shown`` is the source as messages show it (see :func:`redact`).
    """
    shown = redact(source)
    if source.startswith(("http://", "https://")):
        opener = urllib.request.build_opener(_Redirects)
        try:
            # http(s) only: the schema checks the URL, _Redirects every redirect (urllib also
            # follows ftp://)
            resp = opener.open(_request(source), timeout=60)
        except KvmError as exc:
            raise KvmError(f"cannot download {shown}: {exc}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise KvmError(f"cannot download {shown}: {_scrub(exc, source)}") from None
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            return resp, int(length), shown
        with resp:
            try:
                spool = tempfile.TemporaryFile(dir=SPOOL_DIR)  # noqa: SIM115
            except OSError as exc:
                raise KvmError(
                    f"cannot download {shown}: cannot spool it in {SPOOL_DIR}: {exc.strerror}"
                ) from None
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    got = spool.tell()
                    spool.close()
                    raise _interrupted(
                        shown, got, "an unknown number of", _scrub(exc, source)
                    ) from None
                if not chunk:
                    break
                try:
                    spool.write(chunk)
                except OSError as exc:
                    spool.close()
                    raise KvmError(
                        f"cannot download {shown}: spooling it to {SPOOL_DIR} failed: "
                        f"{exc.strerror}"
                    ) from None
        length = spool.tell()
        spool.seek(0)
        return spool, length, shown
    schema.validate(schema.ABSPATH, source, "source")
    try:
        fh = open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise KvmError(f"cannot read {source}: {exc.strerror}") from None
    return fh, os.fstat(fh.fileno()).st_size, shown


def _remember_digest(path, digest):
    with contextlib.suppress(OSError, TypeError):
        st = os.stat(path)
        os.setxattr(path, XATTR, f"{digest}:{st.st_size}:{st.st_mtime_ns}".encode())


def volume_digest(path: str, *, compute: bool = True) -> Optional[str]:
    """The sha256 of a volume's content (remembered one when its size and mtime still match)."""
    with contextlib.suppress(OSError, TypeError, ValueError):
        st = os.stat(path)
        digest, size, mtime = os.getxattr(path, XATTR).decode().split(":")
        if int(size) == st.st_size and int(mtime) == st.st_mtime_ns:
            return digest
    if not compute:
        return None
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                sha.update(chunk)
    except OSError as exc:
        raise KvmError(f"cannot read {path}: {exc.strerror}") from None
    digest = sha.hexdigest()
    _remember_digest(path, digest)
    return digest


def _stream_upload(session, vol, src, length, label, progress=None, source=None):
    """Send ``length`` bytes of ``src`` into ``vol``; its sha256.

    A source that ends early (a download cut short: fewer bytes than its
    Content-Length) or fails while read aborts the upload with a KvmError.
    """
    shown = redact(source) if source else label
    sha = hashlib.sha256()
    stream = session.conn.newStream(0)
    sent = 0
    # the events name the volume, never the source (a URL may hold a password)
    reporter = progress_mod.Reporter(
        "import",
        f"importing {label}",
        total=length,
        progress=progress,
        fields={"volume": label},
        logger=log,
    )
    reporter.start()
    try:
        vol.upload(stream, 0, length, 0)
        while sent < length:
            try:
                chunk = src.read(min(CHUNK, length - sent))
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise _interrupted(shown, sent, length, _scrub(exc, source or "")) from None
            if not chunk:
                raise _interrupted(shown, sent, length)
            sha.update(chunk)
            view = memoryview(chunk)
            while view:
                done = stream.send(view.tobytes())
                if done < 0:
                    raise KvmError(f"importing {label}: the libvirt stream refused data")
                view = view[done:]
            sent += len(chunk)
            reporter.update(sent)
        stream.finish()
    except libvirt.libvirtError as exc:  # raw: the stream is aborted, the reporter told why
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        reporter.finish(sent, error=libvirt_message(exc))
        raise KvmError(f"importing {label}: {libvirt_message(exc)}") from None
    except BaseException as exc:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        reporter.finish(sent, error=str(exc) or type(exc).__name__)
        raise
    reporter.finish(sent)
    return sha.hexdigest()


def volume_import(  # pylint: disable=redefined-builtin
    session: Any,
    pool: str,
    name: str,
    source: str,
    *,
    sha256: Optional[str] = None,
    format: Optional[str] = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Stream a local file or an http(s) URL into a new volume, checking its sha256.

    On a sha256 mismatch (or a format other than a declared one) the new
    volume is removed again and nothing is left behind.
    """
    _names(pool, name)
    spec = schema.validate(
        schema.VOLUME,
        {
            k: v
            for k, v in {"source": source, "sha256": sha256, "format": format}.items()
            if v is not None
        },
        name,
    )
    _must_be_new(session, pool, name, redo="import")
    _import(session, pool, name, spec, progress)
    return volume_show(session, pool, name)


def _import(session, pool, name, spec, progress=None):
    source = spec["source"]
    label = f"{pool}/{name}"
    entry = _pool_entry(session, pool)
    src, length, shown = _open_source(source)
    mark = _mark(session, pool, name)
    vol = None
    try:
        with libvirt_errors(f"importing {label}"):
            with src:
                xml = sxml.Volume.build(
                    name, length, fmt="raw" if _pool_type(session, pool) in FILE_POOLS else None
                )
                # marked before libvirt makes the volume: a kill at any point from here leaves it
                # incomplete
                journal.begin(mark, None, "import", source=shown)
                what = f"creating volume '{name}' in pool '{pool}'"
                with _writing(session, pool, what, undo=lambda: journal.drop(mark)):
                    vol = entry["obj"].createXML(xml.to_xml(), 0)
                journal.begin(mark, vol.path(), "import", source=shown)
                log.info("importing %s from %s (%s)", label, shown, units.format_size(length))
                try:
                    digest = _stream_upload(session, vol, src, length, label, progress, source)
                except KvmError as exc:
                    raise KvmError(f"importing {label}: {exc}; the volume was removed") from None
            want = spec.get("sha256")
            if want and digest != want.lower():
                raise KvmError(
                    f"importing {label} from {shown}: sha256 is {digest}, expected {want.lower()}; "
                    "the volume was removed"
                )
            entry["obj"].refresh(0)
            vol = entry["obj"].storageVolLookupByName(name)
            model = sxml.Volume(vol.XMLDesc(0))
            if spec.get("format") and model.format and model.format != spec["format"]:
                raise KvmError(
                    f"importing {label}: {shown} is a {model.format} image, declared "
                    f"{spec['format']}; the volume was removed"
                )
            _remember_digest(model.path, digest)
            # what was imported, for a later sha256 check after a declared grow
            journal.write(
                mark,
                model.path,
                state="complete",
                op="import",
                sha256=digest,
                length=length,
                source=shown,
            )
            _patch(session, pool, name, vol)
            vol = None  # keep it
            return digest
    finally:
        if vol is not None:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
                journal.drop(mark)
            _invalidate(session, pool)


# --- clone, resize, wipe, delete ---------------------------------------------------------


def _copied(pool_xml, name):
    """A probe of a clone's progress: bytes allocated to the new volume's file so far
    (None for volumes that are not files: LVs, partitions, RBD images)."""
    model = sxml.Pool(pool_xml)
    if not model.target or model.type not in FILE_POOLS:
        return lambda: None
    path = os.path.join(model.target, name)
    return lambda: progress_mod.allocated(path)


def _clone_allocation(ptype, capacity):
    """The allocation a clone is created with: a file is copied sparse (0); an LV or a
    partition is allocated whole, as :func:`volume_create` makes them. Below its capacity,
    libvirt's logical backend makes a *sparse snapshot LV* (``lvcreate --type snapshot
    --virtualsize``) with one extent of copy-on-write space: the copy overflows it (libvirt
    then fails with "cannot sync data to file '/dev/VG/LV': Input/output error") and libvirt
    cannot wipe such a volume."""
    return 0 if ptype in FILE_POOLS else capacity


def volume_clone(  # pylint: disable=redefined-builtin
    session: Any,
    pool: str,
    source: str,
    name: str,
    *,
    format: Optional[str] = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Copy volume ``source`` to a new volume ``name`` in the same pool, optionally converting its
    format.

    Progress (``progress``: see :mod:`salt_kvm.progress`) is estimated from the
    space the new file takes against the source's allocation; libvirt's copy
    itself reports none.
    """
    _names(pool, name)
    schema.validate(schema.VOLNAME, source, "source")
    if format is not None:
        schema.validate(schema.VOLUME.fields["format"], format, "format")
    src = _lookup(session, pool, source)
    _must_be_new(session, pool, name, redo="clone")
    model = sxml.Volume(src["xml"])
    ptype = _pool_type(session, pool)
    fmt = format or model.format if ptype in FILE_POOLS else None
    xml = sxml.Volume.build(
        name, model.capacity, fmt=fmt, allocation=_clone_allocation(ptype, model.capacity)
    )
    entry = _pool_entry(session, pool)
    reporter = progress_mod.Reporter(
        "clone",
        f"cloning {pool}/{source} to {name}",
        total=model.allocation or model.capacity,
        progress=progress,
        fields={"volume": f"{pool}/{name}", "source": f"{pool}/{source}"},
        logger=log,
        cap=99,
    )
    mark = _mark(session, pool, name)
    journal.begin(mark, None, "clone", source=f"{pool}/{source}")
    # libvirt removes a volume whose copy failed: its mark goes too
    with _writing(
        session, pool, f"cloning volume '{source}' to '{name}'", undo=lambda: journal.drop(mark)
    ):
        vol = progress_mod.watch(
            lambda: entry["obj"].createXMLFrom(xml.to_xml(), src["obj"], 0),
            _copied(entry["xml"], name),
            reporter,
        )
    journal.drop(mark)
    _patch(session, pool, name, vol)
    return volume_show(session, pool, name)


def _running_disk_targets(session, path):
    """``[(domain, target dev)]`` of running VMs that have the file or device at ``path`` as a disk
    (by identity: a VM reaching it through a symlink or another spelling counts)."""
    want = depends.identity(path)
    out = []
    for dom in session.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            root = parse(dom.XMLDesc(0))
        except libvirt.libvirtError:  # raw: a VM that went away while we listed has no disks
            continue
        for disk in root.findall("devices/disk"):
            src, tgt = disk.find("source"), disk.find("target")
            if (
                src is not None
                and tgt is not None
                and want == depends.identity(src.get("file") or src.get("dev"))
            ):
                out.append((dom, tgt.get("dev")))
    return out


def _resize(session, pool, name, capacity, shrink=False):
    vol = _lookup(session, pool, name)
    path = sxml.Volume(vol["xml"]).path

    def refresh():
        with contextlib.suppress(libvirt.libvirtError):
            pools_mod.lookup_pool(session, pool)["obj"].refresh(0)

    with _writing(session, pool, f"resizing volume '{name}' in pool '{pool}'", undo=refresh):
        running = _running_disk_targets(session, path)
        if running and not shrink:
            for dom, dev in running:
                dom.blockResize(dev, capacity, BLOCK_RESIZE_BYTES)
                log.info(
                    "volume %s/%s grown to %s online in VM %s (%s)",
                    pool,
                    name,
                    units.format_size(capacity),
                    dom.name(),
                    dev,
                )
            # the storage driver did not make this change (the VM's qemu did): let it read the
            # volume again
            refresh()
        elif _pool_type(session, pool) == "logical" and not shrink:
            _lvextend(path, capacity)  # libvirt's logical backend cannot change a volume's capacity
            pools_mod.lookup_pool(session, pool)["obj"].refresh(0)
        else:
            vol["obj"].resize(capacity, RESIZE_SHRINK if shrink else 0)
    _patch(session, pool, name, vol["obj"])


def _lvextend(path, capacity):
    """Grow a logical volume with LVM's own ``lvextend`` (rounded up to whole extents)."""
    lvextend = shutil.which("lvextend") or "/sbin/lvextend"
    proc = subprocess.run(
        [lvextend, "-L", f"{int(capacity)}b", path], capture_output=True, text=True, check=False
    )  # nosec B603
    if proc.returncode != 0:
        raise KvmError(f"growing logical volume {path}: {(proc.stderr or proc.stdout).strip()}")


def _tolerance(session, pool):
    return pool_types.get(_pool_type(session, pool)).size_rounding


def volume_resize(
    session: Any, pool: str, name: str, size: Any, *, force: bool = False
) -> dict[str, Any]:
    """Grow a volume to ``size`` (online through the running VM that has it attached).

    Shrinking is refused unless ``force`` (data past the new end is lost).
    """
    _names(pool, name)
    capacity = schema.validate(schema.Size(), size, "size")
    model = sxml.Volume(_lookup(session, pool, name)["xml"])
    current = model.capacity
    capacity = cast(int, stored_size(_pool_type(session, pool), model.format, capacity))
    if capacity < current - _tolerance(session, pool):
        if not force:
            raise Refused(
                f"volume '{name}' is {units.format_size(current)}; shrinking it to "
                f"{units.format_size(capacity)} loses data (force: True to shrink)"
            )
        _resize(session, pool, name, capacity, shrink=True)
    elif capacity > current:
        _resize(session, pool, name, capacity)
    return volume_show(session, pool, name)


def _guard_in_use(session, pool, name, force, doing):
    """Refuse ``doing`` to a volume a VM (or a VM's snapshot) uses or another image builds on."""
    if force:
        return
    ident = identity_of(session, pool, name)
    depends.guard(
        depends.scan(session), ident, f"volume '{name}'", doing, force, exclude_images=[ident]
    )


def _wiped(path):
    """A probe of a wipe's progress: libvirt zeroes a file from its start, so the offset of
    the storage daemon's open file is how far it got (read from ``/proc``; None when the
    daemon is not local or not visible, then only the elapsed time is reported)."""
    pids = progress_mod.daemon_pids() if path else []
    return lambda: progress_mod.file_position(pids, path) if pids else None


def volume_wipe(
    session: Any, pool: str, name: str, *, force: bool = False, progress: Any = None
) -> bool:
    """Overwrite a volume's data with zeros; refused while it is in use or backs another volume.

    Progress (``progress``: see :mod:`salt_kvm.progress`): libvirt reports none;
    the percent is read from how far libvirt's writing got (its file offset in
    ``/proc``), against the allocation it wipes; where that cannot be seen
    (a remote libvirtd), only the elapsed time is reported.
    """
    _names(pool, name)
    _guard_in_use(session, pool, name, force, "wiping")
    found = _lookup(session, pool, name)
    vol = found["obj"]
    model = sxml.Volume(found["xml"])
    try:
        total = vol.info()[
            2
        ]  # what libvirt zeroes: the allocation (a sparse file is only truncated)
    except libvirt.libvirtError:  # raw: without info() the allocation in the XML is the total
        total = model.allocation
    reporter = progress_mod.Reporter(
        "wipe",
        f"wiping {pool}/{name}",
        total=total,
        progress=progress,
        fields={"volume": f"{pool}/{name}"},
        logger=log,
        cap=99,
    )
    mark = _mark(session, pool, name)
    journal.begin(mark, model.path, "wipe")
    with _writing(
        session, pool, f"wiping volume '{name}' (it is partly wiped: wipe it again or delete it)"
    ):
        progress_mod.watch(lambda: vol.wipe(0), _wiped(model.path), reporter)
    _empty_image(session, pool, name, model)
    journal.drop(mark)
    _patch(session, pool, name, vol)
    return True


def _empty_image(session, pool, name, model):
    """After libvirt zeroed every byte of an image file (its header too), make it an
    empty image of the same format and virtual size again (on its backing file, if
    it had one), so the VM using it still starts and reads zeros; raw files need nothing."""
    if _pool_type(session, pool) not in FILE_POOLS or (model.format or "raw") not in SECTOR_FORMATS:
        return
    cmd = ["qemu-img", "create", "-q", "-f", model.format]
    if model.backing_path:
        cmd += ["-b", model.backing_path, "-F", model.backing_format or "raw"]
    cmd += [model.path, str(model.capacity)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KvmError(
            f"wiping volume '{name}': cannot make it an empty {model.format} image again: {exc}"
        ) from None
    if proc.returncode != 0:
        raise KvmError(
            f"wiping volume '{name}': cannot make it an empty {model.format} image again: "
            f"{proc.stderr.strip()}"
        )
    with contextlib.suppress(libvirt.libvirtError):
        pools_mod.lookup_pool(session, pool)["obj"].refresh(0)
    _invalidate(session, pool)


def _delete(session, pool, name, what=None):
    """Delete volume ``name`` of ``pool`` (guards are the caller's), with its journal mark."""
    mark = _mark(session, pool, name)
    with _writing(session, pool, f"deleting {what or f'volume {name!r}'}"):
        _lookup(session, pool, name)["obj"].delete(0)
    journal.drop(mark)
    _patch(session, pool, name)


def volume_delete(session: Any, pool: str, name: str, *, force: bool = False) -> bool:
    """Delete a volume; refused while a VM uses it or it backs another volume, unless ``force``."""
    _names(pool, name)
    _guard_in_use(session, pool, name, force, "deleting")
    _delete(session, pool, name)
    return True


# --- the states --------------------------------------------------------------------------


class VolumeResource(plan.Resource):
    def __init__(
        self,
        session: Any,
        pool: str,
        name: str,
        spec: dict[str, Any],
        *,
        progress: Any = None,
    ) -> None:
        self.session, self.pool, self.name, self.spec = session, pool, name, spec
        self.progress = progress
        self.what = f"volume '{name}' in pool '{pool}'"

    def read(self) -> Optional[dict[str, Any]]:
        vols = volumes(self.session, self.pool)
        if self.name not in vols:
            return None
        info = _info(sxml.Volume(vols[self.name]["xml"]))
        record = journal.read(_mark(self.session, self.pool, self.name), info["path"])
        if record and record.get("state") == "incomplete":
            info["incomplete"] = f"its {record['op']} was interrupted at {record['at']}"
        elif record and record.get("op") == "import":
            info["imported_sha256"] = record.get("sha256")
        return info

    def _size(self, fmt: Optional[str] = None) -> Optional[int]:
        """The declared size as the pool will store it in format ``fmt`` (see
        :func:`stored_size`)."""
        try:
            ptype = _pool_type(self.session, self.pool)
        except NotFound:  # test=True before the pool's own state made it
            return self.spec.get("size")
        return stored_size(
            ptype,
            fmt or self.spec.get("format") or ("raw" if self.spec.get("source") else "qcow2"),
            self.spec.get("size"),
        )

    def new(self) -> dict[str, Any]:
        """What a new volume is shown as (``changes: {volume: {new: ...}}``)."""
        keys = ("source", "sha256", "size", "format", "backing", "preallocation")
        new = {k: self.spec[k] for k in keys if k in self.spec}
        if "source" in new:
            new["source"] = redact(new["source"])  # never a password of the URL
        if "size" in new and "source" not in new:
            new["size"] = self._size()  # as it will be stored (a qcow2's 1.1G is 1181116416 bytes)
        return new

    def plan(self, current: Optional[dict[str, Any]]) -> Plan:
        return Plan(self._changes(current), existed=current is not None, payload=current)

    def _changes(self, current: Optional[dict[str, Any]]) -> Changes:
        spec = self.spec
        if current is None:
            return {"volume": {"old": None, "new": self.new()}}
        changes = {}
        force = spec.get("force")
        if current.get("incomplete"):
            if not spec.get("source"):
                raise KvmError(
                    f"{current['incomplete']}; its content is not complete (run the operation "
                    "again, or delete the volume)"
                )
            return {"volume": {"old": f"incomplete ({current['incomplete']})", "new": self.new()}}
        if (
            spec.get("format")
            and current["format"]
            and spec["format"] != current["format"]
            and _pool_type(self.session, self.pool) in FILE_POOLS
        ):
            raise Refused(
                f"it is a {current['format']} volume, declared {spec['format']}; formats are "
                f"never changed in place (clone it with kvm.volume_clone format={spec['format']})"
            )
        if spec.get("backing"):
            want = spec["backing"] if spec["backing"].startswith("/") else None
            if want is None and spec["backing"] in volumes(self.session, self.pool):
                want = sxml.Volume(volumes(self.session, self.pool)[spec["backing"]]["xml"]).path
            if current["backing"] != want:
                raise Refused(
                    f"its backing file is {current['backing']}, declared {spec['backing']}; "
                    "the backing file of an existing volume is never changed"
                )
        if spec.get("sha256"):
            # what was imported (recorded then), so a declared grow since is no mismatch
            have = current.get("imported_sha256") or volume_digest(current["path"])
            if have != spec["sha256"].lower():
                if not force:
                    raise Refused(
                        f"its content has sha256 {have}, declared {spec['sha256'].lower()}; "
                        "re-importing would overwrite it (force: True to do it)"
                    )
                changes["sha256"] = {"old": have, "new": spec["sha256"].lower()}
        size = self._size(current["format"])
        if size is not None and "sha256" not in changes:
            cap = current["capacity"]
            if size > cap:
                changes["size"] = {"old": cap, "new": size}
            elif size < cap - _tolerance(self.session, self.pool):
                if not force:
                    raise Refused(
                        f"it is {units.format_size(cap)}; shrinking it to "
                        f"{units.format_size(size)} loses data (force: True to shrink)"
                    )
                changes["size"] = {"old": cap, "new": size}
        return changes

    def apply(self, plan: Plan, undo: Undo) -> None:
        spec, changes, current = self.spec, plan.changes, plan.payload
        if "volume" in changes or "sha256" in changes:
            if current is not None:  # an interrupted import, or a forced re-import
                if current.get("incomplete"):
                    _guard_in_use(
                        self.session,
                        self.pool,
                        self.name,
                        force=spec.get("force"),
                        doing="redoing the interrupted import of",
                    )
                _delete(self.session, self.pool, self.name, f"{self.what} to import it again")
            if spec.get("source"):
                _import(self.session, self.pool, self.name, spec, self.progress)
                now = _info(sxml.Volume(_lookup(self.session, self.pool, self.name)["xml"]))
                size = self._size(now["format"])
                if size and size > now["capacity"]:
                    _resize(self.session, self.pool, self.name, size)
                elif size and size < now["capacity"] - _tolerance(self.session, self.pool):
                    raise KvmError(
                        f"the image from {redact(spec['source'])} is "
                        f"{units.format_size(now['capacity'])}, larger than the declared size "
                        f"{units.format_size(size)}"
                    )
            else:
                _create(self.session, self.pool, self.name, spec)
            return
        if "size" in changes:
            _resize(
                self.session,
                self.pool,
                self.name,
                changes["size"]["new"],
                shrink=changes["size"]["new"] < changes["size"]["old"],
            )

    def verify(self, plan: Plan, after: Any) -> Changes:
        if after is None:
            return {"volume": {"old": None, "new": self.new()}}
        try:
            return self._changes(after)
        except Refused as exc:  # e.g. an image larger than the declared size
            return {"volume": {"old": after, "new": f"{self.new()} ({exc})"}}

    def restore(self, before: Any, undo: Undo) -> Optional[str]:
        if before is not None:
            return None  # a grow is not undone (shrinking could lose data)
        with contextlib.suppress(KvmError):
            _invalidate(self.session, self.pool)
            if self.name in volumes(self.session, self.pool):
                _delete(self.session, self.pool, self.name)
                return f"removed the new volume '{self.name}'"
        return None

    def summary(self, plan: Plan, test: bool) -> str:
        verb = "would be" if test else "was"
        if "volume" in plan.changes:
            how = "imported" if self.spec.get("source") else "created"
            return f"{self.what} {verb} {how}"
        return super().summary(plan, test)


def volume_present(
    session: Any,
    name: str,
    *,
    pool: Optional[str] = None,
    test: bool = False,
    progress: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """State: the volume exists (created, or imported from ``source``), at least ``size``."""
    try:
        if pool is None:
            raise InvalidInput(f"{name}:pool", "is required")
        schema.validate(schema.OBJNAME, pool, f"{name}:pool")
        spec = schema.validate_args(schema.VOLUME, name, kwargs, name_field=schema.VOLNAME)
        found = schema.Errors()
        schema.check_volume(spec, name, name, found)  # the pillar's own rules
        if found:
            raise InvalidInput(found[0][0], found[0][1], list(found))
        spec = plan.declared(spec, state_only=("absent",))
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"volume '{name}': {exc}")
    resource = VolumeResource(session, pool, name, spec, progress=progress)
    try:
        _pool_entry(session, pool)
    except KvmError as exc:
        if test:  # the pool's own state (ordered first) would make it: predict the volume
            predicted = Plan({"volume": {"old": None, "new": resource.new()}}, existed=False)
            return plan.state_return(
                name,
                None,
                predicted.salt_changes(),
                f"{resource.summary(predicted, True)} ({exc})",
            )
        return plan.state_return(name, False, comment=f"volume '{name}': {exc}")
    return plan.ensure(name, resource, test=test)


def volume_absent(
    session: Any,
    name: str,
    *,
    pool: Optional[str] = None,
    force: bool = False,
    test: bool = False,
) -> dict[str, Any]:
    """State: the volume does not exist; refused while a VM uses it or it backs another volume,
    unless ``force``."""
    try:
        if pool is None:
            raise InvalidInput(f"{name}:pool", "is required")
        schema.validate(schema.VOLNAME, name, name)
        schema.validate(schema.OBJNAME, pool, f"{name}:pool")
        schema.validate(schema.Bool(), bool(force) if force is None else force, f"{name}:force")
    except InvalidInput as exc:
        return plan.state_return(name, False, comment=f"volume '{name}': {exc}")
    what = f"volume '{name}' in pool '{pool}'"

    def exists():
        if pool not in pools_mod.pools(session):
            return None
        vols = volumes(session, pool)
        return _info(sxml.Volume(vols[name]["xml"])) if name in vols else None

    def guard(current):
        _guard_in_use(session, pool, name, force, "deleting")

    def remove(current):
        _delete(session, pool, name, what)

    return plan.absent(name, what, exists, remove, test=test, guard=guard)
