{#- Removes the libvirt secrets hastack defined on this minion that the pillar no
    longer names (hastack.stale); secrets defined by hand are never touched. A highstate
    does not include this SLS: apply it on purpose, with test=True first. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- set stale = salt['hastack.stale'](formula=tplroot) %}
{%- for uri, uuids in stale.libvirt_secrets | dictsort %}
{%-   for uuid in uuids %}

hastack-libvirt-clean-secret-{{ uuid }}:
  libvirt_secret.absent:
    - name: {{ uuid }}
    - uri: {{ uri | json }}
{%-   endfor %}
{%- endfor %}
{%- if not stale.libvirt_secrets %}

hastack-libvirt-clean-nothing:
  test.show_notification:
    - text: >-
        Nothing to clean: every libvirt secret hastack defined here is still in the pillar
{%- endif %}
