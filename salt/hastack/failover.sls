{#- Self-healing, node side: the hastack_cluster beacon on every Pacemaker node tells
    the master when a node goes down or comes back (hastack/node/down|up). The master
    side is salt/hastack/files/hastack-failover.conf (README, "Self-healing"). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import hastack, ceph_id with context %}
{%- if hastack.get('failover', {}).get('applies') %}

hastack-failover-beacon:
  beacon.present:
    - name: hastack_cluster
    - save: True
    - interval: {{ hastack.failover.beacon_interval }}
    - resend: {{ hastack.failover.beacon_resend }}
{%- else %}

hastack-failover-not-here:
  test.show_notification:
    - text: >-
        {{ tplroot }}.failover does not apply to this minion: hastack:failover is not in its
        pillar, or it is not a Pacemaker node (none of its roles,
        {{ hastack.roles | join(', ') or 'none' }}, is in hastack:pacemaker:roles)
{%- endif %}
