"""Masterless Salt minions wired to this repository and a lab, for tests, demo and bench.

A minion here is a config directory: ``file_roots`` is the repo's ``salt/``, the custom
modules load straight from ``_modules``/``_states``/``_utils`` (no sync step), and its pillar is
the repo's example pillar plus a ``lab`` overlay that points it at the lab cluster and
a private ``conf_dir`` instead of /etc/ceph.
"""

import json
import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SALT_CALL = os.path.join(os.path.dirname(sys.executable), "salt-call")


def lab_overlay(facts, conf_dir, etc_dir=None, libvirt_uri=None, cloud=None):
    """Pillar that points the example at a lab cluster (and lab libvirtd), with keyring
    owners that exist here and the OpenStack files under ``etc_dir`` (created). The
    example's floating IPs apply only with ``cloud`` (a lab Neutron's connection)."""
    overlay = {
        "hastack": {
            "ceph": {
                "fsid": facts["fsid"],
                "mon_host": facts["mon_host"],
                "conf_dir": conf_dir,
                "admin_keyring": facts["admin_keyring"],
                "users": {
                    "glance": {"keyring": {"owner": "nobody", "group": "nogroup"}},
                    "cinder": {"keyring": {"owner": "root", "group": "root"}},
                },
            }
        }
    }
    if etc_dir:
        for service, name in (
            ("glance", "glance-api.conf"),
            ("cinder", "cinder.conf"),
            ("nova", "nova.conf"),
        ):
            os.makedirs(os.path.join(etc_dir, service), exist_ok=True)
            overlay["hastack"][service] = {"config_file": os.path.join(etc_dir, service, name)}
        overlay["hastack"]["cinder"]["systemd_dir"] = os.path.join(etc_dir, "systemd", "system")
        overlay["hastack"]["cinder"]["upstart_dir"] = os.path.join(etc_dir, "init")
        # Pacemaker on an empty CIB file; the lab has no fencing device.
        cib = os.path.join(etc_dir, "pacemaker", "cib.xml")
        os.makedirs(os.path.dirname(cib), exist_ok=True)
        if not os.path.exists(cib):
            with open(cib, "w", encoding="utf-8") as fh:
                subprocess.run(["cibadmin", "--empty"], stdout=fh, check=True)
        overlay["hastack"]["pacemaker"] = {
            "cib_file": cib,
            "properties": {"stonith-enabled": "false"},
        }
    if libvirt_uri:
        overlay["hastack"]["libvirt"] = {"uri": libvirt_uri}
    if cloud:
        overlay["hastack"]["openstack"] = {"cloud": cloud}
    else:
        overlay["hastack"]["floating_ips"] = {"roles": []}
    return overlay


def write_pillar_root(pillar_dir, minion_id, overlay, example=True):
    """A pillar root: the repo's example pillar (linked) with ``overlay`` as the minion's
    last pillar file, or with ``example=False`` the overlay alone."""
    os.makedirs(pillar_dir, exist_ok=True)
    if example:
        link = os.path.join(pillar_dir, "hastack")
        if not os.path.islink(link):
            os.symlink(os.path.join(REPO, "pillar", "hastack"), link)
        with open(os.path.join(REPO, "pillar", "top.sls"), encoding="utf-8") as fh:
            top = yaml.safe_load(fh)
    else:
        top = {"base": {}}
    # The overlay is this minion's last pillar file, so it wins over the example.
    top["base"][minion_id] = list(top["base"].get(minion_id) or []) + ["lab"]
    with open(os.path.join(pillar_dir, "top.sls"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(top, fh, sort_keys=False)
    write_overlay(pillar_dir, overlay)


def write_overlay(pillar_dir, overlay):
    """(Re)write the overlay: the pillar file every test or demo edit goes to."""
    with open(os.path.join(pillar_dir, "lab.sls"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(overlay, fh)


class Minion:
    """One masterless minion: ``call('state.apply', 'hastack')`` runs ``salt-call --local``
    (behind the ``wrap`` prefix, e.g. nsenter into a lab node, if given).

    Its pillar is the repo's example pillar with ``overlay`` merged last, or with
    ``example=False`` the overlay alone.
    """

    def __init__(self, root, minion_id, overlay, example=True, wrap=()):
        self.root = os.path.abspath(root)
        # A command prefix for every call, e.g. nsenter into a lab node's namespaces.
        self.wrap = list(wrap)
        self.id = minion_id
        self.config_dir = os.path.join(self.root, "config")
        self.pillar_dir = os.path.join(self.root, "pillar")
        self.log_file = os.path.join(self.root, "minion.log")
        self.cachedir = os.path.join(self.root, "cache")
        os.makedirs(self.config_dir, exist_ok=True)
        write_pillar_root(self.pillar_dir, minion_id, overlay, example)
        config = {
            "id": minion_id,
            "file_client": "local",
            "root_dir": self.root,
            "cachedir": self.cachedir,
            "pki_dir": os.path.join(self.root, "pki"),
            "sock_dir": os.path.join(self.root, "sock"),
            "pidfile": os.path.join(self.root, "minion.pid"),
            "log_file": self.log_file,
            "log_level_logfile": "debug",
            "file_roots": {"base": [os.path.join(REPO, "salt")]},
            "pillar_roots": {"base": [self.pillar_dir]},
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "extension_modules": os.path.join(self.cachedir, "extmods"),
            "cache_jobs": True,
            "state_output": "full",
        }
        with open(os.path.join(self.config_dir, "minion"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)

    def loader(self, pillar=None):
        """``(execution functions, state functions)`` loaded in this process as this
        minion loads them (``pillar`` as its pillar): a run's work without Salt's start-up."""
        import salt.config  # pylint: disable=import-outside-toplevel
        import salt.loader  # pylint: disable=import-outside-toplevel

        opts = salt.config.minion_config(os.path.join(self.config_dir, "minion"))
        opts["test"] = False
        opts["pillar"] = pillar or {}
        utils = salt.loader.utils(opts)
        funcs = salt.loader.minion_mods(opts, utils=utils)
        return funcs, salt.loader.states(opts, funcs, utils, {})

    def configure(self, **settings):
        """Change settings of this minion's config file (e.g. grains, file_roots)."""
        path = os.path.join(self.config_dir, "minion")
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
        config.update(settings)
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)

    def set_overlay(self, overlay):
        write_overlay(self.pillar_dir, overlay)

    def argv(self, fun, *args, test=False, log_level="quiet"):
        argv = [
            SALT_CALL,
            "--local",
            "-c",
            self.config_dir,
            "--out",
            "json",
            "--retcode-passthrough",
            "-l",
            log_level,
            fun,
            *args,
        ]
        if test:
            argv.append("test=True")
        return argv

    def call(self, fun, *args, test=False, timeout=300, env=None, log_level="quiet"):
        """Run salt-call; return (retcode, parsed 'local' output or raw text).

        The raw stdout and stderr of the last call stay in ``last_output``.
        """
        proc = subprocess.run(
            self.wrap + self.argv(fun, *args, test=test, log_level=log_level),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
        self.last_output = proc.stdout + proc.stderr
        try:
            out = json.loads(proc.stdout)["local"]
        except (ValueError, KeyError, TypeError):
            out = self.last_output
        return proc.returncode, out


def changes_by_id(state_ret):
    """{state id: changes} of a state.apply return (only states with changes)."""
    out = {}
    for value in (state_ret or {}).values():
        if isinstance(value, dict) and value.get("changes"):
            out[value["__id__"]] = value["changes"]
    return out
