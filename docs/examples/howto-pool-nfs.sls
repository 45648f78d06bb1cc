# Pillar (docs/howto/storage-pools.rst): an NFS export as a libvirt pool,
# mounted at target by libvirt, with one volume in it.
kvm:
  pools:
    nfs-images:
      type: netfs
      target: /srv/nfs-images
      autostart: true
      source:
        hosts: [nfs.example.net]
        dir: /exports/images
        format: nfs
      volumes:
        web02.qcow2: {size: 20G, format: qcow2}
