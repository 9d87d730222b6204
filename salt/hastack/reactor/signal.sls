{#- hastack self-healing: the one reaction to hastack/node/down|up and
    salt/presence/change. failover.admit, the gate (hastack's execution module, loaded
    by the master), checks the event while the reactor renders this file: shape, sender,
    signature, age and nonce of a node signal, or the hint of a presence event, in well
    under a millisecond and with no pillar compile or job. Only what passes becomes a
    failover.signal runner job, which checks it again. A master without the gate loaded
    (modules not synced to it) hands every event to the runner. #}
{%- if 'failover.admit' not in salt or salt['failover.admit'](tag, data) %}
hastack-failover-signal:
  runner.failover.signal:
    - args:
      - tag: {{ tag | json }}
      - envelope: {{ data | json }}
{%- endif %}
