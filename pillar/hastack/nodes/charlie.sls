hastack:
  roles: [compute]
