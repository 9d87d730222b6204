"""A stand-in for the Nova API's server listing: the one MOCK in the floating-IP lab.

Nothing here can run a real Nova (it needs a scheduler, conductor, placement and a
hypervisor). hastack asks Nova one question, "which server is named X" (then asks
Neutron for that server's ports), so this answers only that: ``GET /v2.1/servers`` and
``/v2.1/servers/detail`` with the ``name`` regex filter, plus version discovery, from a
table the test or demo fills with ``add(name, server_id)``. Every port and floating IP
stays real Neutron.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class NovaStub:
    def __init__(self):
        self.servers = {}  # id -> name
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                path = url.path.rstrip("/")
                if path in ("", "/v2.1"):
                    version = {
                        "id": "v2.1",
                        "status": "CURRENT",
                        "version": "2.96",
                        "min_version": "2.1",
                        "links": [{"rel": "self", "href": stub.url}],
                    }
                    self._json(200, {"version": version} if path else {"versions": [version]})
                    return
                if path in ("/v2.1/servers", "/v2.1/servers/detail"):
                    pattern = parse_qs(url.query).get("name", [None])[0]
                    found = [
                        {"id": sid, "name": name, "status": "ACTIVE", "links": []}
                        for sid, name in sorted(stub.servers.items())
                        if pattern is None or re.search(pattern, name)
                    ]
                    self._json(200, {"servers": found})
                    return
                self._json(404, {"itemNotFound": {"code": 404, "message": "not in the stand-in"}})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v2.1/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def add(self, name, server_id):
        self.servers[server_id] = name

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
