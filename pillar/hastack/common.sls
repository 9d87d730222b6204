# Site-wide settings of the workshop's cloud (site dc1).
#
# The keys below are OBVIOUS FAKES: valid cephx key encodings whose secret bytes spell
# "FAKE-glance-key!" and "FAKE-cinder-key!". Generate real ones with
# `ceph-authtool --gen-print-key` and keep them encrypted (Salt's GPG renderer).
hastack:
  site: dc1
  ceph:
    cluster: ceph
    conf_dir: /etc/ceph
    fsid: 4b5c8c0a-ff60-454b-a1b4-9747aa737d19
    mon_host: >-
      [v2:192.168.122.111:3300,v1:192.168.122.111:6789]
      [v2:192.168.122.112:3300,v1:192.168.122.112:6789]
      [v2:192.168.122.113:3300,v1:192.168.122.113:6789]
    admin_minion: alice
    pools:
      images: {pg_num: 32, application: rbd}
      volumes: {pg_num: 32, application: rbd}
      vms: {pg_num: 32, application: rbd}
    users:
      glance:
        key: AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ==
        caps:
          mon: profile rbd
          osd: profile rbd pool=images
        keyring: {owner: glance, group: glance, mode: '0640'}
        roles: [controller]
      cinder:
        key: AQAAAAAAAAAAABAARkFLRS1jaW5kZXIta2V5IQ==
        caps:
          mon: profile rbd
          osd: profile rbd pool=volumes, profile rbd pool=vms, profile rbd-read-only pool=images
        keyring: {owner: cinder, group: cinder, mode: '0640'}
        roles: [controller, compute]
  # OpenStack on those pools. The secret UUID names the libvirt secret that holds
  # client.cinder's key on every compute (cinder volumes and nova disks use it).
  glance:
    pool: images
    user: glance
  cinder:
    backends:
      ceph:
        pool: volumes
        user: cinder
        secret_uuid: 95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6
  nova:
    images_type: rbd
    pool: vms
    user: cinder
    secret_uuid: 95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6
  libvirt:
    secrets:
      95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6:
        ceph_user: cinder
