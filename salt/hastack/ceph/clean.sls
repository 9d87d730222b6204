{#- Removes what hastack created on this minion and the pillar no longer names
    (hastack.stale): cephx users (on the cluster's admin minion), keyring files and
    [client.<user>] sections of ceph.conf. What an operator made by hand was never
    noted, so it is never removed. A highstate does not include this SLS: apply it on
    purpose, with test=True first. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- set stale = salt['hastack.stale'](formula=tplroot) %}
{%- for cluster, entities in stale.users | dictsort %}
{%-   set ceph = hastack.clusters[cluster] %}
{%-   for entity in entities %}

{{ ceph_id(cluster, 'clean-user', entity) }}:
  ceph_client.user_absent:
    - name: {{ entity }}
{%-     for arg in ('cluster', 'conf_dir', 'mon_host', 'admin_keyring', 'timeout', 'backend') %}
    - {{ arg }}: {{ ceph[arg] | json }}
{%-     endfor %}
{%-   endfor %}
{%- endfor %}
{%- for path in stale.keyrings %}

hastack-ceph-clean-keyring-{{ path }}:
  ceph_client.keyring_absent:
    - name: {{ path }}
{%- endfor %}
{%- for conf, sections in stale.conf_sections | dictsort %}

hastack-ceph-clean-conf-{{ conf }}:
  ceph_client.conf_sections_absent:
    - name: {{ conf }}
    - sections: {{ sections | json }}
{%- endfor %}
{%- if not (stale.users or stale.keyrings or stale.conf_sections) %}

hastack-ceph-clean-nothing:
  test.show_notification:
    - text: >-
        Nothing to clean: every Ceph user, keyring and ceph.conf section hastack created here is still in the pillar
{%- endif %}
