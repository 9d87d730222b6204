{#- CephFS directories mounted where the minion's roles need them (the instances
    directory every compute shares, for the host-identity failover). The cluster's admin
    minion creates the filesystem and the directories (ceph.cluster). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('cephfs', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.cephfs), it still honours the roles. #}
include:
  - .ceph.client
{%-   for mountpoint, mount in hastack.cephfs.mounts | dictsort if mount.applies %}

hastack-cephfs-mount-{{ mountpoint }}:
  ceph_client.fs_mounted:
    - name: {{ mountpoint }}
    - fs: {{ mount.fs }}
    - path: {{ mount.path }}
    - user: {{ mount.user }}
    - keyring: {{ mount.keyring }}
    - conf: {{ mount.conf }}
    - fsid: {{ hastack.clusters[mount.cluster].fsid }}
    - client: {{ mount.client }}
    - owner: {{ mount.owner }}
    - group: {{ mount.group }}
    - mode: '{{ mount.mode }}'
    - timeout: {{ hastack.clusters[mount.cluster].timeout }}
    - pillar_key: {{ mount.pillar_key }}
    - require:
      - ceph_client: {{ ceph_id(mount.cluster, 'conf') }}
      - ceph_client: {{ ceph_id(mount.cluster, 'keyring', mount.user) }}
{%-     if hastack.clusters[mount.cluster].is_admin_minion %}
      - ceph_client: {{ ceph_id(mount.cluster, 'fs-dir', mount.fs ~ ':' ~ mount.path) }}
{%-     endif %}
{%-   endfor %}
{%- else %}

hastack-cephfs-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.cephfs does not apply to this minion: hastack:cephfs is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:cephfs:roles
{%- endif %}
