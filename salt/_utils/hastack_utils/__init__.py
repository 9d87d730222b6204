"""
Pure logic of hastack, importable without a Salt loader: the cephx key and caps
grammar (``cephx``), INI editing (``ini``), the CIB mapping (``cib``) and the pillar
schemas (``schema``). hastack's execution and state modules import these; nothing
here talks to a backend or runs a command.

Installed with the ``saltext.hastack`` package, or synced from ``_utils`` by
``saltutil.sync_all`` (Salt puts ``_utils`` on ``sys.path`` while it loads modules).
"""
