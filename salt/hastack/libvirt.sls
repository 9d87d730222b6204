{#- libvirt secrets holding Ceph keys, set through the libvirt API (never virsh argv). #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set libvirt = hastack.libvirt %}
{%- if hastack.clusters.values() | selectattr('is_admin_minion') | list %}
{#- A rotation updates the cluster first, then the secret. #}
include:
  - hastack.ceph.cluster
{%- endif %}
{%- for uuid, secret in libvirt.secrets | dictsort %}

hastack-libvirt-secret-{{ uuid }}:
  libvirt_secret.present:
    - name: {{ uuid }}
    - ceph_user: {{ secret.ceph_user }}
    - usage: {{ secret.usage | json }}
    - key_pillar: {{ secret.key_pillar }}
    - uri: {{ libvirt.uri | json }}
    - replace_usage: {{ secret.replace_usage }}
{%-   if secret.user_state %}
    - require:
      - ceph_client: {{ secret.user_state }}
{%-   endif %}
{%- endfor %}
