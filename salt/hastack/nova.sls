{#- Nova on Ceph RBD: [libvirt] images and the rbd user and secret for volumes. #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set nova = hastack.nova %}
include:
  - hastack.ceph.client
{%- if hastack.get('libvirt', {}).get('applies') %}
  - hastack.libvirt
{%- endif %}
{%- if nova.settings %}

hastack-nova-conf:
  hastack.ini_present:
    - name: {{ nova.config_file }}
    - sections: {{ nova.settings | json }}
    - require:
      - sls: hastack.ceph.client
{%- endif %}
{%- if nova.service.manage %}

hastack-nova-service:
  service.running:
    - name: {{ nova.service.name }}
    - enable: True
    - watch:
      - ceph_client: {{ nova.keyring_state }}
{%-   if nova.settings %}
      - hastack: hastack-nova-conf
{%-   endif %}
{%- endif %}
