{#- Pools and cephx users, on hastack:ceph:admin_minion (it holds client.admin). #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set ceph = hastack.ceph %}
{%- set conn = {'cluster': ceph.cluster, 'conf_dir': ceph.conf_dir, 'mon_host': ceph.mon_host,
                'admin_keyring': ceph.admin_keyring, 'timeout': ceph.timeout} %}

hastack-ceph-cluster-reachable:
  ceph_client.cluster_reachable:
    - name: {{ ceph.cluster }}
{%- for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%- endfor %}

{%- for pool, spec in ceph.pools | dictsort %}

hastack-ceph-pool-{{ pool }}:
  ceph_client.pool_present:
    - name: {{ pool }}
    - pg_num: {{ spec.pg_num }}
    - application: {{ spec.application }}
{%- for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%- endfor %}
    - require:
      - ceph_client: hastack-ceph-cluster-reachable
{%- endfor %}

{%- for user, spec in ceph.users | dictsort %}

hastack-ceph-user-{{ user }}:
  ceph_client.user_present:
    - name: client.{{ user }}
    - key_pillar: {{ spec.key_pillar }}
    - caps: {{ spec.caps | json }}
{%- for arg, value in conn.items() %}
    - {{ arg }}: {{ value | json }}
{%- endfor %}
    - require:
      - ceph_client: hastack-ceph-cluster-reachable
{%- for pool in ceph.pools | sort %}
      - ceph_client: hastack-ceph-pool-{{ pool }}
{%- endfor %}
{%- endfor %}
