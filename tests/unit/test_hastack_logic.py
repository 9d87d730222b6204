"""Pure logic of the hastack module: INI editing that keeps what it does not manage."""

import os

from tests.helpers import load_module

hk = load_module("_modules", "hastack")


class TestIni:
    def test_unmanaged_lines_survive_and_names_match_any_spelling(self, tmp_path):
        path = tmp_path / "ceph.conf"
        path.write_text(
            "# site tuning, hand-written\n[global]\nfsid = old\nmon host = 10.0.0.9\n"
            "ms_mode = secure  # keep me\n\n[client.glance]\nrbd cache = true\n\n[osd]\nosd op threads = 4\n"
        )
        settings = {
            "global": {"fsid": "f1", "mon_host": "127.0.0.1"},
            "client.glance": {"keyring": "/k/glance"},
            "client.cinder": {"keyring": "/k/cinder"},
        }
        changes = hk.ini_set(str(path), settings)
        assert changes == {
            "[global] fsid": {"old": "old", "new": "f1"},
            "[global] mon_host": {"old": "10.0.0.9", "new": "127.0.0.1"},
            "[client.glance] keyring": {"old": None, "new": "/k/glance"},
            "[client.cinder] keyring": {"old": None, "new": "/k/cinder"},
        }
        text = path.read_text()
        for kept in (
            "# site tuning, hand-written",
            "ms_mode = secure  # keep me",
            "rbd cache = true",
            "[osd]\nosd op threads = 4",
        ):
            assert kept in text
        assert "mon host" not in text and text.count("mon_host") == 1
        assert hk.ini_set(str(path), settings) == {}
        conf = hk.ini_read(str(path))
        assert conf["client.glance"] == {"rbd_cache": "true", "keyring": "/k/glance"}

    def test_new_file_is_created_world_readable(self, tmp_path):
        path = tmp_path / "ceph.conf"
        hk.ini_set(str(path), {"global": {"fsid": "f"}})
        assert oct(os.stat(path).st_mode & 0o777) == "0o644"
