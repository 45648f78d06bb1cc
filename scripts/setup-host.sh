#!/usr/bin/env bash
# Make this Debian 12 host ready for salt-kvm's demo and tests: the Debian
# packages libvirt/QEMU need, and libvirtd + virtlogd running (there may be no
# systemd). Idempotent: installs only what is missing, starts only what is down.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config
  qemu-system-x86 qemu-utils dnsmasq-base
  iproute2 iputils-ping parted lvm2 e2fsprogs ifupdown
  gcc time
)
python3 -c 'import ensurepip' 2>/dev/null || PACKAGES+=(python3-venv)
python3 - <<'PY' 2>/dev/null || PACKAGES+=(python3-dev)
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
PY
# extra packages a capability needs (storage backends, persistence parsers, ...)
[ -f scripts/host-packages.txt ] && while read -r pkg _; do
  case "$pkg" in ''|'#'*) ;; *) PACKAGES+=("$pkg") ;; esac
done < scripts/host-packages.txt

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
installed_now=0
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  installed_now=1
fi

# libvirtd loads storage backends only when it starts: restart it after installing some.
if [ "$installed_now" = 1 ] && pgrep -x libvirtd >/dev/null; then
  echo "setup-host: restarting libvirtd to load new drivers"
  $SUDO kill "$(cat /run/libvirtd.pid 2>/dev/null || pgrep -x libvirtd)" 2>/dev/null || true
  for _ in $(seq 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
fi
pgrep -x virtlogd >/dev/null || { echo "setup-host: starting virtlogd"; $SUDO virtlogd -d; }
pgrep -x libvirtd >/dev/null || { echo "setup-host: starting libvirtd"; $SUDO libvirtd -d; }
for _ in $(seq 100); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.2
done
echo "setup-host: libvirtd does not answer at qemu:///system" >&2
exit 1
