hastack-bench-floor-noop:
  salt.function:
    - name: test.ping
    - tgt: bob
