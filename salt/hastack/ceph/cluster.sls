{#- Pools and cephx users of every cluster whose admin minion this is (it holds
    client.admin there). The main cluster's state ids are hastack-ceph-*, another
    cluster's hastack-ceph-<cluster>-*. #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- for ceph in hastack.clusters.values() if ceph.is_admin_minion %}
{%-   set p = ceph.prefix %}
{%-   set conn = {'cluster': ceph.cluster, 'conf_dir': ceph.conf_dir, 'mon_host': ceph.mon_host,
                  'admin_keyring': ceph.admin_keyring, 'timeout': ceph.timeout,
                  'backend': ceph.backend} %}

{{ p }}-cluster-reachable:
  ceph_client.cluster_reachable:
    - name: {{ ceph.cluster }}
{%-   for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-   endfor %}

{%-   for pool, spec in ceph.pools | dictsort %}

{{ p }}-pool-{{ pool }}:
  ceph_client.pool_present:
    - name: {{ pool }}
    - pg_num: {{ spec.pg_num }}
    - application: {{ spec.application }}
    - pillar_key: {{ ceph.base }}:pools:{{ pool }}
{%-     for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-     endfor %}
    - require:
      - ceph_client: {{ p }}-cluster-reachable
{%-   endfor %}

{%-   for user, spec in ceph.users | dictsort %}

{{ p }}-user-{{ user }}:
  ceph_client.user_present:
    - name: client.{{ user }}
    - key_pillar: {{ spec.key_pillar }}
    - caps: {{ spec.caps | json }}
{%-     for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%-     endfor %}
    - require:
      - ceph_client: {{ p }}-cluster-reachable
{%-     for pool in ceph.pools | sort %}
      - ceph_client: {{ p }}-pool-{{ pool }}
{%-     endfor %}
{%-   endfor %}
{%- endfor %}
