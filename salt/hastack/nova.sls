{#- Nova on Ceph RBD: [libvirt] images and the rbd user and secret for volumes. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('nova', {}).get('applies') %}
{#- Applied directly (state.apply {{ tplroot }}.nova), it still honours the roles. #}
{%- set nova = hastack.nova %}
include:
  - .ceph.client
{%- if hastack.get('libvirt', {}).get('applies') %}
  - .libvirt
{%- endif %}
{%- if nova.settings %}

hastack-nova-conf:
  hastack.ini_present:
    - name: {{ nova.config_file }}
    - sections: {{ nova.settings | json }}
    - require:
      - sls: {{ tplroot }}.ceph.client
{%- endif %}
{%- if nova.service.manage %}

hastack-nova-service:
  service.running:
    - name: {{ nova.service.name }}
    - enable: True
    - watch:
      - ceph_client: {{ ceph_id(nova.cluster, 'keyring', nova.user) }}
{%-   if nova.settings %}
      - hastack: hastack-nova-conf
{%-   endif %}
{%- endif %}
{%- else %}

hastack-nova-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.nova does not apply to this minion: hastack:nova is not in its
        pillar, or none of its roles ({{ hastack.roles | join(', ') or 'none' }}) is in
        hastack:nova:roles
{%- endif %}
