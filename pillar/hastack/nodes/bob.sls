hastack:
  roles: [controller, compute]
