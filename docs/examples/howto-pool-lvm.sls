# Pillar (docs/howto/storage-pools.rst): a volume group on /dev/sdb as a
# libvirt "logical" pool; each volume is a logical volume (raw).
kvm:
  pools:
    vg-vms:
      type: logical
      autostart: true
      source:
        devices: [/dev/sdb]
        name: vg_vms
      volumes:
        db01-data: {size: 50G}
