{#- For every cluster: its ceph.conf and the keyrings of the users this minion's roles
    need. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- set admin_here = hastack.clusters.values() | selectattr('is_admin_minion') | list %}
{%- if admin_here %}
{#- On an admin minion the clusters come first: an unreachable cluster stops the
    client files too, so a failed run leaves nothing half-done. #}
include:
  - .cluster
{%- endif %}
{%- for ceph in hastack.clusters.values() if ceph.local_users %}

{{ ceph_id(ceph.cluster, 'conf-dir') }}:
  file.directory:
    - name: {{ ceph.conf_dir }}
    - makedirs: True
{%-   if admin_here %}
    - require:
{%-     for admin in admin_here %}
      - ceph_client: {{ ceph_id(admin.cluster, 'cluster-reachable') }}
{%-     endfor %}
{%-   endif %}

{{ ceph_id(ceph.cluster, 'conf') }}:
  ceph_client.conf_present:
    - name: {{ ceph.conf }}
    - fsid: {{ ceph.fsid }}
    - mon_host: {{ ceph.mon_host | json }}
    - clients:
{%-   for user in ceph.local_users %}
        {{ user }}: {{ ceph.users[user].keyring.path }}
{%-   endfor %}
    - require:
      - file: {{ ceph_id(ceph.cluster, 'conf-dir') }}

{%-   for user in ceph.local_users %}
{%-     set keyring = ceph.users[user].keyring %}

{{ ceph_id(ceph.cluster, 'keyring', user) }}:
  ceph_client.keyring_present:
    - name: {{ keyring.path }}
    - entity: client.{{ user }}
    - key_pillar: {{ ceph.users[user].key_pillar }}
    - owner: {{ keyring.owner }}
    - group: {{ keyring.group }}
    - mode: '{{ keyring.mode }}'
    - require:
      - file: {{ ceph_id(ceph.cluster, 'conf-dir') }}
{%-   endfor %}
{%- endfor %}
