{#- For every cluster: its ceph.conf and the keyrings of the users this minion's roles
    need. #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set admin_here = hastack.clusters.values() | selectattr('is_admin_minion') | list %}
{%- if admin_here %}
{#- On an admin minion the clusters come first: an unreachable cluster stops the
    client files too, so a failed run leaves nothing half-done. #}
include:
  - hastack.ceph.cluster
{%- endif %}
{%- for ceph in hastack.clusters.values() if ceph.local_users %}
{%-   set p = ceph.prefix %}

{{ p }}-conf-dir:
  file.directory:
    - name: {{ ceph.conf_dir }}
    - makedirs: True
{%-   if admin_here %}
    - require:
{%-     for admin in admin_here %}
      - ceph_client: {{ admin.prefix }}-cluster-reachable
{%-     endfor %}
{%-   endif %}

{{ p }}-conf:
  ceph_client.conf_present:
    - name: {{ ceph.conf }}
    - fsid: {{ ceph.fsid }}
    - mon_host: {{ ceph.mon_host | json }}
    - clients:
{%-   for user in ceph.local_users %}
        {{ user }}: {{ ceph.users[user].keyring.path }}
{%-   endfor %}
    - require:
      - file: {{ p }}-conf-dir

{%-   for user in ceph.local_users %}
{%-     set keyring = ceph.users[user].keyring %}

{{ p }}-keyring-{{ user }}:
  ceph_client.keyring_present:
    - name: {{ keyring.path }}
    - entity: client.{{ user }}
    - key_pillar: {{ ceph.users[user].key_pillar }}
    - owner: {{ keyring.owner }}
    - group: {{ keyring.group }}
    - mode: '{{ keyring.mode }}'
    - require:
      - file: {{ p }}-conf-dir
{%-   endfor %}
{%- endfor %}
