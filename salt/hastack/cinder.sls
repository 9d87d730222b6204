{#- Cinder volumes on Ceph RBD: one section per backend (release's names), and
    CEPH_ARGS=--id <user> for cinder-volume. #}
{%- from "hastack/map.jinja" import hastack with context %}
{%- set cinder = hastack.cinder %}
include:
  - hastack.ceph.client

hastack-cinder-conf:
  hastack.ini_present:
    - name: {{ cinder.config_file }}
    - sections: {{ cinder.settings | json }}
    - require:
      - sls: hastack.ceph.client
{%- if cinder.ceph_args_user %}

hastack-cinder-ceph-args:
  file.managed:
{%-   if cinder.release == 'folsom' %}
    {#- The workshop's Ubuntu ran cinder-volume under upstart. #}
    - name: {{ cinder.upstart_dir }}/{{ cinder.service.name }}.override
    - contents: 'env CEPH_ARGS="--id {{ cinder.ceph_args_user }}"'
{%-   else %}
    - name: {{ cinder.systemd_dir }}/{{ cinder.service.name }}.service.d/hastack-ceph.conf
    - contents: |
        # Managed by hastack: the Ceph id for the ceph/rbd commands cinder-volume runs.
        [Service]
        Environment=CEPH_ARGS=--id {{ cinder.ceph_args_user }}
{%-   endif %}
    - makedirs: True
    - mode: '0644'
{%-   if cinder.release != 'folsom' and grains.get('init') == 'systemd' %}

hastack-cinder-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: hastack-cinder-ceph-args
{%-   endif %}
{%- endif %}
{%- if cinder.service.manage %}

hastack-cinder-service:
  service.running:
    - name: {{ cinder.service.name }}
    - enable: True
    - watch:
      - hastack: hastack-cinder-conf
{%-   if cinder.ceph_args_user %}
      - file: hastack-cinder-ceph-args
{%-   endif %}
{%-   for keyring_state in cinder.keyring_states %}
      - ceph_client: {{ keyring_state }}
{%-   endfor %}
{%- endif %}
