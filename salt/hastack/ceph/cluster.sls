{#- Pools, cephx users, CephFS filesystems and the directories mounted from them, of every cluster whose admin minion this is (it holds
    client.admin there). State ids: see ceph_id in map.jinja. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- for ceph in hastack.clusters.values() if ceph.is_admin_minion %}
{%-   set conn = {'cluster': ceph.cluster, 'conf_dir': ceph.conf_dir, 'mon_host': ceph.mon_host,
                  'admin_keyring': ceph.admin_keyring, 'timeout': ceph.timeout,
                  'backend': ceph.backend} %}

{{ ceph_id(ceph.cluster, 'cluster-reachable') }}:
  ceph_client.cluster_reachable:
    - name: {{ ceph.cluster }}
{%-   for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-   endfor %}

{%-   for pool, spec in ceph.pools | dictsort %}

{{ ceph_id(ceph.cluster, 'pool', pool) }}:
  ceph_client.pool_present:
    - name: {{ pool }}
    - pg_num: {{ spec.pg_num }}
    - application: {{ spec.application }}
    - pillar_key: {{ ceph.base }}:pools:{{ pool }}
{%-     for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-     endfor %}
    - require:
      - ceph_client: {{ ceph_id(ceph.cluster, 'cluster-reachable') }}
{%-   endfor %}

{%-   for user, spec in ceph.users | dictsort %}

{{ ceph_id(ceph.cluster, 'user', user) }}:
  ceph_client.user_present:
    - name: client.{{ user }}
    - key_pillar: {{ spec.key_pillar }}
    - caps: {{ spec.caps | json }}
{%-     for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-     endfor %}
    - require:
      - ceph_client: {{ ceph_id(ceph.cluster, 'cluster-reachable') }}
{%-     for pool in ceph.pools | sort %}
      - ceph_client: {{ ceph_id(ceph.cluster, 'pool', pool) }}
{%-     endfor %}
{%-   endfor %}

{%-   for fs, spec in ceph.filesystems | dictsort %}

{{ ceph_id(ceph.cluster, 'fs', fs) }}:
  ceph_client.fs_present:
    - name: {{ fs }}
    - metadata_pool: {{ spec.metadata_pool }}
    - data_pool: {{ spec.data_pool }}
{%-     for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-     endfor %}
    - require:
      - ceph_client: {{ ceph_id(ceph.cluster, 'pool', spec.metadata_pool) }}
      - ceph_client: {{ ceph_id(ceph.cluster, 'pool', spec.data_pool) }}
{%-     for path in ceph.fs_dirs.get(fs, []) %}

{{ ceph_id(ceph.cluster, 'fs-dir', fs ~ ':' ~ path) }}:
  ceph_client.fs_dir_present:
    - name: {{ path }}
    - fs: {{ fs }}
{%-       for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-       endfor %}
    - require:
      - ceph_client: {{ ceph_id(ceph.cluster, 'fs', fs) }}
{%-     endfor %}
{%-   endfor %}
{%- endfor %}
