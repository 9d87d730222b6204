{#- Glance on Ceph RBD: the store options in glance-api.conf (release's names). #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set glance = hastack.glance %}
include:
  - hastack.ceph.client

hastack-glance-conf:
  hastack.ini_present:
    - name: {{ glance.config_file }}
    - sections: {{ glance.settings | json }}
    - require:
      - sls: hastack.ceph.client
{%- if glance.service.manage %}

hastack-glance-service:
  service.running:
    - name: {{ glance.service.name }}
    - enable: True
    - watch:
      - hastack: hastack-glance-conf
      - ceph_client: {{ glance.keyring_state }}
{%- endif %}
