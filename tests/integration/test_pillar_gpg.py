"""README's warning, shown on a real apply: at log level ``all`` Salt itself logs the
text of every Jinja-rendered pillar file, keys included; with the key GPG-encrypted
(``#!jinja|yaml|gpg``) the same log holds only the PGP message, Salt decrypts it in
memory, and the key still reaches the cluster and the keyring."""

import os
import subprocess

import pytest
import yaml

from lab import saltlocal
from tests.helpers import apply

KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="
RECIPIENT = "hastack-test@example.invalid"


@pytest.fixture
def gpg_home(tmp_path):
    """A GPG home with the recipient's key; its gpg-agent (which gpg starts and leaves
    running) is stopped at the end."""
    home = tmp_path / "gpgkeys"
    home.mkdir(mode=0o700)
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            RECIPIENT,
            "default",
            "default",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    yield home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def encrypt(home, text):
    return subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--armor",
            "--trust-model",
            "always",
            "--encrypt",
            "-r",
            RECIPIENT,
        ],
        input=text,
        text=True,
        check=True,
        capture_output=True,
    ).stdout


def minion_with_pillar_text(tmp_path, name, ceph_lab, key_text, header, config_extra=None):
    """A masterless minion whose only pillar file is ``header`` + the Ceph tree with
    ``key_text`` as client.glance's key."""
    conf_dir = str(tmp_path / f"etc-ceph-{name}")
    tree = {
        "hastack": {
            "roles": ["controller"],
            "ceph": {
                "fsid": ceph_lab["fsid"],
                "mon_host": ceph_lab["mon_host"],
                "conf_dir": conf_dir,
                "admin_minion": name,
                "admin_keyring": ceph_lab["admin_keyring"],
                "pools": {"images": {"pg_num": 8}},
                "users": {
                    "glance": {
                        "key": "KEY",
                        "caps": {"mon": "profile rbd", "osd": "profile rbd pool=images"},
                    }
                },
            },
        }
    }
    minion = saltlocal.Minion(str(tmp_path / name), name, {}, example=False)
    text = yaml.safe_dump(tree).replace(
        "key: KEY", "key: |\n" + "".join(f"          {line}\n" for line in key_text.splitlines())
    )
    with open(os.path.join(minion.pillar_dir, "lab.sls"), "w", encoding="utf-8") as fh:
        fh.write(header + text)
    minion.configure(log_level_logfile="all", **(config_extra or {}))
    minion.conf_dir = conf_dir
    return minion


def logged_apply(minion):
    rc, _ = apply(minion, log_level="all")
    assert rc == 0, minion.last_output
    with open(minion.log_file, encoding="utf-8", errors="replace") as fh:
        return minion.last_output + fh.read()


def test_plain_pillar_leaks_at_log_level_all_and_gpg_pillar_does_not(ceph_lab, tmp_path, gpg_home):
    plain = minion_with_pillar_text(tmp_path, "plain", ceph_lab, KEY, "#!jinja|yaml\n")
    assert KEY in logged_apply(plain)  # Salt's own rendering log, as README warns

    home = gpg_home
    secret = minion_with_pillar_text(
        tmp_path,
        "secret",
        ceph_lab,
        encrypt(home, KEY),
        "#!jinja|yaml|gpg\n",
        {"gpg_keydir": str(home)},
    )
    logged = logged_apply(secret)
    assert "BEGIN PGP MESSAGE" in logged  # the rendered pillar text was logged...
    assert KEY not in logged  # ...without the key
    with open(os.path.join(secret.conf_dir, "ceph.client.glance.keyring"), encoding="utf-8") as fh:
        assert KEY in fh.read()
