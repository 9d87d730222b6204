{#- hastack self-healing: hand every node signal to the failover runner, with the
    event's tag and whole envelope; the runner checks who sent it. Thin on purpose. #}
hastack-failover-signal:
  runner.failover.signal:
    - args:
      - tag: {{ tag | json }}
      - envelope: {{ data | json }}
