#!/usr/bin/env bash
# Runs INSIDE the virtme-ng guest (see scripts/test-kernel.sh): loads the
# kernel modules the tests need, starts private services (libvirtd/virtlogd
# with fresh config/state dirs, dbus, iscsid), runs `pytest -m kernel` and
# writes everything into OUT (shared with the host): pytest.log, junit.xml,
# guest.log, rc. The guest's /run, /var/log, /var/tmp are its own tmpfs; its
# /etc, /usr, /var are overlays over the host's (writes stay in the guest).
OUT=$1
mapfile -t ARGS <"$OUT/args"
REPO=$(cd "$(dirname "$0")/.." && pwd)
echo 1 >"$OUT/rc"
exec >"$OUT/guest.log" 2>&1
set -x
t0=$(date +%s)
uname -a
pgrep -a udevd || echo "no udevd"

modprobe -a loop veth dummy bridge 8021q dm_mod dm_snapshot dm_thin_pool nfs nfsd iscsi_tcp || true

# LVM without udev rules/sync (virtme-ng gives an empty /etc/lvm)
mkdir -p /etc/lvm && cat >/etc/lvm/lvm.conf <<'CONF'
devices { obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
global { use_lvmetad = 0 }
CONF

# a private libvirt: only the host's *.conf files, none of its defined objects
mkdir -p /run/kvt-etc-libvirt && cp -a /etc/libvirt/*.conf /run/kvt-etc-libvirt/ 2>/dev/null
mount --bind /run/kvt-etc-libvirt /etc/libvirt
mount -t tmpfs tmpfs /var/lib/libvirt
mkdir -p /var/lib/libvirt/{images,qemu,boot,dnsmasq} /var/log/libvirt/qemu /var/cache/libvirt /var/lib/iscsi /var/lib/nfs
chown libvirt-qemu:kvm /var/lib/libvirt/qemu 2>/dev/null || true

mkdir -p /run/dbus && dbus-daemon --system --fork || true
echo "InitiatorName=iqn.2026-11.test.kvt:guest" >/etc/iscsi/initiatorname.iscsi
iscsid || true
virtlogd -d
libvirtd -d
for _ in $(seq 150); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
virsh -c qemu:///system version
echo "services up after $(( $(date +%s) - t0 )) s"

cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 KVT_KERNEL_GUEST=1
"$REPO/.venv/bin/python" -m pytest -m kernel -p no:cacheprovider --durations=15 \
  --junitxml="$OUT/junit.xml" "${ARGS[@]}" >"$OUT/pytest.log" 2>&1
rc=$?
echo "pytest exit $rc after $(( $(date +%s) - t0 )) s"
for f in /var/log/libvirt/libvirtd.log; do [ -f "$f" ] && tail -n 50 "$f"; done
echo "$rc" >"$OUT/rc"
sync
