{#- ceph.conf and the keyrings of the users this minion's roles need. #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set ceph = hastack.ceph %}
{%- set my_users = {} %}
{%- for user in ceph.local_users %}
{%-   do my_users.update({user: ceph.users[user]}) %}
{%- endfor %}

{%- if my_users %}
{#- On the admin minion the cluster comes first: an unreachable cluster stops the
    client files too, so a failed run leaves nothing half-done. #}
{%-   if ceph.is_admin_minion %}
include:
  - hastack.ceph.cluster
{%-   endif %}

hastack-ceph-conf-dir:
  file.directory:
    - name: {{ ceph.conf_dir }}
    - makedirs: True
{%- if ceph.is_admin_minion %}
    - require:
      - ceph_client: hastack-ceph-cluster-reachable
{%- endif %}

hastack-ceph-conf:
  ceph_client.conf_present:
    - name: {{ ceph.conf_dir }}/{{ ceph.cluster }}.conf
    - fsid: {{ ceph.fsid }}
    - mon_host: {{ ceph.mon_host | json }}
    - clients:
{%- for user, spec in my_users | dictsort %}
        {{ user }}: {{ spec.keyring.path }}
{%- endfor %}
    - require:
      - file: hastack-ceph-conf-dir

{%-   for user, spec in my_users | dictsort %}

hastack-ceph-keyring-{{ user }}:
  ceph_client.keyring_present:
    - name: {{ spec.keyring.path }}
    - entity: client.{{ user }}
    - key_pillar: {{ spec.key_pillar }}
    - owner: {{ spec.keyring.owner }}
    - group: {{ spec.keyring.group }}
    - mode: '{{ spec.keyring.mode }}'
    - require:
      - file: hastack-ceph-conf-dir
{%-   endfor %}
{%- endif %}
