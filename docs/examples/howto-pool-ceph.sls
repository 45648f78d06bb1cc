# Pillar (docs/howto/storage-pools.rst): a Ceph RBD pool. The client key is
# stored in a private libvirt secret (usage salt-kvm/ceph-vms) and never shown;
# keep it in an encrypted pillar (GPG renderer, Vault).
kvm:
  pools:
    ceph-vms:
      type: rbd
      autostart: true
      source:
        hosts: [192.0.2.21, "192.0.2.22:6789"]
        name: libvirt-pool
        auth:
          type: ceph
          username: libvirt
          secret: AQBexampleonlyexampleonlyexampleonlyAA==
      volumes:
        web03-disk: {size: 20G}
