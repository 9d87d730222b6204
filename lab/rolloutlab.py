"""Two sites for rollouts: a real salt-master, real minions (each on its own loopback
address) split between sites ``osl`` and ``ber``, one lab Ceph cluster per site, one
libvirtd per minion (the Ceph key's libvirt secret), and each site's Pacemaker
configuration on a CIB file (``cib_file``; the live cluster is the failover lab's).

The pillar is the shape README documents: the global pillar holds what the sites share
(pools, the cinder user's caps), ``hastack:sites:<site>`` each site's Ceph cluster and
key, Pacemaker nodes and rollout settings, ``hastack:minion`` a minion's own paths.
"""

import concurrent.futures
import copy
import os
import shutil
import subprocess
import sys

import yaml

from lab import cephlab, libvirtlab, procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SITES = ("osl", "ber")
SECRET = "6d1c2f1e-4f0a-4c55-9a55-2c1f0b5e7a11"
CINDER_CAPS = {"mon": "profile rbd", "osd": "profile rbd pool=volumes"}
KEYS = {
    # Obvious fakes: the secret bytes spell "osl-cinder-key!!" and so on.
    "osl": "AQAAAAAAAAAAABAAb3NsLWNpbmRlci1rZXkhIQ==",
    "ber": "AQAAAAAAAAAAABAAYmVyLWNpbmRlci1rZXkhIQ==",
}


class LabError(RuntimeError):
    pass


def minion_ids(per_site):
    return [f"{site}-{i}" for site in SITES for i in range(1, per_site + 1)]


def address(minion):
    site, _, number = minion.partition("-")
    return f"127.0.0.{60 + SITES.index(site) * 30 + int(number)}"


class Lab:
    def __init__(self, d, per_site=3, libvirt=True):
        self.dir = os.path.abspath(d)
        self.per_site = per_site
        self.minions = minion_ids(per_site)
        self.with_libvirt = libvirt
        self.ceph = {}
        self.libvirt = {}
        self.master_pid = None
        self.minion_pids = {}
        self.ports = {"publish": procs.free_port(), "ret": procs.free_port()}
        self.master_conf = os.path.join(self.dir, "master", "conf")
        self.pillar_dir = os.path.join(self.dir, "pillar")
        self.sites = {}
        self.written = None  # the pillar last written

    # ----------------------------------------------------------------- pillar

    def site_of(self, minion):
        return minion.partition("-")[0]

    def base_pillar(self):
        """The pillar as an operator would write it for the two sites (a mapping of
        SLS name to content); tests change it and call ``write_pillar``."""
        sites = {}
        for site in SITES:
            facts = self.ceph[site]
            members = [m for m in self.minions if self.site_of(m) == site]
            sites[site] = {
                "ceph": {
                    "fsid": facts["fsid"],
                    "mon_host": facts["mon_host"],
                    "admin_minion": members[0],
                    "users": {"cinder": {"key": KEYS[site]}},
                },
                "pacemaker": {
                    "nodes": members[:3] if len(members) >= 2 else members,
                    "cib_file": self.cib_file(site),
                    "properties": {"stonith-enabled": "false"},
                    "primitives": {
                        f"p_api_{site}": {
                            "agent": "ocf:pacemaker:Dummy",
                            "ops": {"monitor": {"interval": "10s"}},
                        },
                    },
                },
                "rollout": {"canary": [members[-1]], "batch": 1},
            }
        common = {
            "hastack": {
                "ceph": {
                    "pools": {"volumes": {"pg_num": 8, "application": "rbd"}},
                    "users": {
                        "cinder": {
                            "caps": dict(CINDER_CAPS),
                            "roles": ["controller", "compute"],
                            "keyring": {"owner": "root", "group": "root", "mode": "0600"},
                        }
                    },
                },
                "sites": sites,
            }
        }
        if self.with_libvirt:
            common["hastack"]["libvirt"] = {"secrets": {SECRET: {"ceph_user": "cinder"}}}
        out = {"common": common}
        for minion in self.minions:
            site = self.site_of(minion)
            own = {
                "ceph": {
                    "conf_dir": self.conf_dir(minion),
                    "admin_keyring": self.ceph[site]["admin_keyring"],
                }
            }
            if self.with_libvirt:
                own["libvirt"] = {"uri": self.libvirt[minion]["uri"]}
            out[f"node_{minion.replace('-', '_')}"] = {
                "hastack": {"site": site, "roles": ["controller", "compute"], "minion": own}
            }
        return out

    def write_pillar(self, pillar):
        """Write ``pillar`` (``base_pillar``'s shape) as README lays a sites pillar out:
        every minion gets the sites' ``rollout`` settings (``common.sls``), a site's
        other settings, its keys included, go to that site's minions only
        (``site_<site>.sls``, targeted ``<site>-*``)."""
        os.makedirs(self.pillar_dir, exist_ok=True)
        self.written = copy.deepcopy(pillar)
        files = copy.deepcopy(pillar)
        top = {"base": {"*": ["common"]}}
        for site, spec in (files["common"]["hastack"].get("sites") or {}).items():
            own = {k: v for k, v in spec.items() if k != "rollout"}
            files["common"]["hastack"]["sites"][site] = (
                {"rollout": spec["rollout"]} if "rollout" in spec else {}
            )
            files[f"site_{site}"] = {"hastack": {"sites": {site: own}}}
            top["base"][f"{site}-*"] = [f"site_{site}"]
        for minion in self.minions:
            top["base"][minion] = [f"node_{minion.replace('-', '_')}"]
        for name, content in files.items():
            with open(os.path.join(self.pillar_dir, f"{name}.sls"), "w", encoding="utf-8") as fh:
                yaml.safe_dump(content, fh, sort_keys=False)
        with open(os.path.join(self.pillar_dir, "top.sls"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(top, fh, sort_keys=False)

    def conf_dir(self, minion):
        path = os.path.join(self.dir, "minions", minion, "etc-ceph")
        os.makedirs(path, exist_ok=True)
        return path

    def cib_file(self, site):
        path = os.path.join(self.dir, "pacemaker", site, "cib.xml")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            empty = subprocess.run(
                ["cibadmin", "--empty"], capture_output=True, text=True, check=True
            ).stdout
            with open(path, "w", encoding="utf-8") as fh:
                # As a CIB read from a quorate cluster would say.
                fh.write(empty.replace("<cib ", '<cib have-quorum="1" ', 1))
        return path

    def run_cluster(self, site):
        """What the site's cluster would do with its CIB: its nodes online, every
        resource started where Pacemaker places it (``crm_simulate``: the stand-in for
        a live cluster, which the failover lab runs)."""
        members = [m for m in self.minions if self.site_of(m) == site][:3]
        path = self.cib_file(site)
        argv = ["crm_simulate", "-x", path, "-S", "-q", "1", "-O", path]
        for node in members:
            argv += ["-u", node]
        env = dict(os.environ, CIB_shadow_dir=os.path.dirname(path))
        subprocess.run(argv, capture_output=True, env=env, check=True, timeout=60)

    def fail_resource(self, site, rsc, node):
        """A failed monitor of ``rsc`` on ``node``, as Pacemaker records it
        (``crm_simulate --op-inject``)."""
        path = self.cib_file(site)
        env = dict(os.environ, CIB_shadow_dir=os.path.dirname(path))
        subprocess.run(
            ["crm_simulate", "-x", path, "-S", "-i", f"{rsc}_monitor_10000@{node}=1", "-O", path],
            capture_output=True,
            env=env,
            check=True,
            timeout=60,
        )

    def clear_failures(self, site):
        """The site's cluster cleaned up: its recorded operations dropped (on a CIB
        file ``crm_resource --cleanup`` only dry-runs, and crashes here), then run
        again (``run_cluster``)."""
        path = self.cib_file(site)
        subprocess.run(
            ["cibadmin", "--replace", "-o", "status", "--xml-text", "<status/>"],
            capture_output=True,
            env=dict(os.environ, CIB_file=path),
            check=True,
            timeout=60,
        )
        self.run_cluster(site)

    # ----------------------------------------------------------------- daemons

    def _write_master(self):
        root = os.path.join(self.dir, "master")
        os.makedirs(self.master_conf, exist_ok=True)
        config = {
            "id": "rollout-master",
            "interface": "127.0.0.1",
            "publish_port": self.ports["publish"],
            "ret_port": self.ports["ret"],
            "root_dir": root,
            "pki_dir": os.path.join(root, "pki"),
            "cachedir": os.path.join(root, "cache"),
            "sock_dir": os.path.join(root, "sock"),
            "pidfile": os.path.join(root, "master.pid"),
            "log_file": os.path.join(root, "master.log"),
            "log_level_logfile": "info",
            "user": "root",
            "auto_accept": True,
            "file_roots": {"base": [os.path.join(REPO, "salt")]},
            "pillar_roots": {"base": [self.pillar_dir]},
            "runner_dirs": [os.path.join(REPO, "_runners")],
            "module_dirs": [os.path.join(REPO, "_modules")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "extension_modules": os.path.join(root, "extmods"),
            "minion_data_cache": True,
            "worker_threads": 4,
        }
        with open(os.path.join(self.master_conf, "master"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)

    def start_master(self):
        self._write_master()
        log = open(os.path.join(self.dir, "master.out"), "a")  # noqa: SIM115
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [os.path.join(BIN, "salt-master"), "-c", self.master_conf, "-l", "quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.master_pid = proc.pid
        sock = os.path.join(self.dir, "master", "sock", "master_event_pub.ipc")
        if not procs.until(lambda: os.path.exists(sock), 60, 0.2):
            raise LabError("the salt-master did not start (master.out)")

    def start_minion(self, minion):
        root = os.path.join(self.dir, "minions", minion, "salt")
        conf = os.path.join(root, "conf")
        os.makedirs(conf, exist_ok=True)
        config = {
            "id": minion,
            "master": "127.0.0.1",
            "master_port": self.ports["ret"],
            "publish_port": self.ports["publish"],
            "source_address": address(minion),
            "grains": {"ipv4": [address(minion)]},
            "root_dir": root,
            "pki_dir": os.path.join(root, "pki"),
            "cachedir": os.path.join(root, "cache"),
            "sock_dir": os.path.join(root, "sock"),
            "pidfile": os.path.join(root, "minion.pid"),
            "log_file": os.path.join(root, "minion.log"),
            "log_level_logfile": "info",
            "user": "root",
            "file_client": "remote",
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "extension_modules": os.path.join(root, "extmods"),
            "acceptance_wait_time": 1,
            "random_reauth_delay": 0,
        }
        with open(os.path.join(conf, "minion"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [os.path.join(BIN, "salt-minion"), "-c", conf, "-l", "quiet"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.minion_pids[minion] = proc.pid

    def opts(self):
        import salt.config  # pylint: disable=import-outside-toplevel

        return salt.config.master_config(os.path.join(self.master_conf, "master"))

    def client(self):
        import salt.client  # pylint: disable=import-outside-toplevel

        return salt.client.LocalClient(mopts=self.opts())

    def runner(self, fun, *args, **kwargs):
        """``salt-run fun args`` through the master's own runner client, in this process."""
        import salt.runner  # pylint: disable=import-outside-toplevel

        opts = self.opts()
        opts["quiet"] = True
        return salt.runner.RunnerClient(opts).cmd(fun, list(args), kwarg=kwargs, print_event=False)

    def salt_run(self, *args, timeout=600):
        """The ``salt-run`` command line, as an operator types it: (rc, output)."""
        proc = subprocess.run(
            [os.path.join(BIN, "salt-run"), "-c", self.master_conf, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    def events(self):
        import salt.utils.event  # pylint: disable=import-outside-toplevel

        opts = self.opts()
        return salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)

    def wait_minions(self, timeout=120):
        from salt.exceptions import SaltClientError  # pylint: disable=import-outside-toplevel

        def answered():
            try:
                got = self.client().cmd(self.minions, "test.ping", tgt_type="list", timeout=5)
            except SaltClientError:
                return False
            return sorted(got) == sorted(self.minions)

        if not procs.until(answered, timeout, 1):
            raise LabError(f"minions {self.minions} did not answer within {timeout} s")

    def ceph_cmd(self, site, *args):
        """The ``ceph`` CLI on ``site``'s cluster as client.admin."""
        facts = self.ceph[site]
        return subprocess.run(
            ["ceph", "-c", facts["conf"], *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    def stop(self):
        procs.stop(list(self.minion_pids.values()), timeout=10)
        if self.master_pid:
            procs.stop([self.master_pid], timeout=20)
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(cephlab.stop, [os.path.join(self.dir, "ceph", s) for s in self.ceph]))
            list(
                pool.map(
                    libvirtlab.stop, [os.path.join(self.dir, "libvirt", m) for m in self.libvirt]
                )
            )


def start(d, per_site=3, libvirt=True):
    """Both sites' Ceph clusters, the libvirtds, the master and the minions, the
    minions answering; the pillar as ``base_pillar`` writes it."""
    lab = Lab(d, per_site=per_site, libvirt=libvirt)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            cephs = {s: pool.submit(cephlab.start, os.path.join(lab.dir, "ceph", s)) for s in SITES}
            virts = {
                m: pool.submit(libvirtlab.start, os.path.join(lab.dir, "libvirt", m))
                for m in (lab.minions if libvirt else [])
            }
            lab.ceph = {s: f.result() for s, f in cephs.items()}
            lab.libvirt = {m: f.result() for m, f in virts.items()}
        lab.write_pillar(lab.base_pillar())
        lab.start_master()
        for minion in lab.minions:
            lab.start_minion(minion)
        lab.wait_minions()
        # The sites as they stand before any rollout: deployed, their clusters running.
        got = lab.client().cmd(
            lab.minions, "state.apply", ["hastack"], tgt_type="list", timeout=300, full_return=True
        )
        for minion in lab.minions:
            ret = (got.get(minion) or {}).get("ret")
            if not isinstance(ret, dict) or any(s.get("result") is False for s in ret.values()):
                raise LabError(f"the first apply failed on {minion}: {str(ret)[:2000]}")
        for site in SITES:
            lab.run_cluster(site)
    except BaseException:
        lab.stop()
        raise
    return lab


def remove(lab):
    lab.stop()
    shutil.rmtree(lab.dir, ignore_errors=True)


def changed_pillar(pillar, **keys):
    """A copy of ``pillar`` with the sites' cinder keys replaced (``osl=KEY``...)."""
    out = copy.deepcopy(pillar)
    for site, key in keys.items():
        out["common"]["hastack"]["sites"][site]["ceph"]["users"]["cinder"]["key"] = key
    return out
