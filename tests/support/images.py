"""Disk images for the data-safety tests: patterns written and read back with
``qemu-io`` (through the whole backing chain, sharing the image with a running
QEMU), and other spellings of one path."""

import hashlib
import os
import subprocess
import unittest

CLUSTER = 64 * 1024


def sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def qemu_io(path, *commands, fmt="qcow2"):
    """Run ``qemu-io`` commands on ``path`` (read-only, sharing it with a running QEMU):
    ``(ok, output)``, ok when it ran and no pattern check failed."""
    args = ["qemu-io", "-r", "-U", "-f", fmt]
    for command in commands:
        args += ["-c", command]
    out = subprocess.run([*args, path], capture_output=True, text=True, check=False)
    text = out.stdout + out.stderr
    return out.returncode == 0 and "fail" not in text.lower() and "error" not in text.lower(), text


def write_pattern(path, pattern, offset, fmt="qcow2"):
    subprocess.run(
        ["qemu-io", "-f", fmt, "-c", f"write -P {pattern} {offset} 64k", path],
        check=True,
        capture_output=True,
    )


def reads(path, expected, fmt="qcow2"):
    """``path`` reads ``{offset: pattern}`` (0 for zeros): ``(ok, qemu-io's output)``."""
    return qemu_io(path, *(f"read -P {p} {o} 64k" for o, p in sorted(expected.items())), fmt=fmt)


def spell(path, how, workdir):
    """Another way to write ``path``: through a symlinked directory, ``//``, ``/./``, a bind
    mount."""
    directory, base = os.path.split(path)
    if how == "plain":
        return path
    if how == "slashes":
        return directory + "//" + base
    if how == "dot":
        return directory + "/./" + base
    if how == "symlink":
        link = os.path.join(workdir, "link-" + hashlib.sha256(directory.encode()).hexdigest()[:8])
        if not os.path.islink(link):
            os.symlink(directory, link)
        return os.path.join(link, base)
    if how == "bind":
        mnt = os.path.join(workdir, "bind")
        os.makedirs(mnt, exist_ok=True)
        if (
            subprocess.run(
                ["mount", "--bind", directory, mnt], capture_output=True, check=False
            ).returncode
            != 0
        ):
            raise unittest.SkipTest("bind mounts are not allowed here")
        return os.path.join(mnt, base)
    raise ValueError(how)
