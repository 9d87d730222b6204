"""The Networking API as the lab's Nova sees it: a Neutron with no ports.

Usage: ``/usr/bin/python3 lab/nova_neutron_standin.py PORT``. Lab servers boot with
``"networks": "none"``, yet Nova still asks Neutron for an instance's ports when it
rebuilds, evacuates or deletes one (``GET /v2.0/ports?device_id=...``) and which
extensions it has. This stand-in answers those reads with empty lists (the truth for
port-less servers) and 404 for everything else; a real neutron-server would cost a
second database and about 650 MB for the same answers.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

EMPTY = {
    "/v2.0/ports": "ports",
    "/v2.0/extensions": "extensions",
    "/v2.0/networks": "networks",
    "/v2.0/subnets": "subnets",
    "/v2.0/floatingips": "floatingips",
    "/v2.0/security-groups": "security_groups",
}


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
        path = urlparse(self.path).path.rstrip("/")
        if path.endswith(".json"):
            path = path[: -len(".json")]
        if path == "":
            self._json(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": []}]})
        elif path in EMPTY:
            self._json(200, {EMPTY[path]: []})
        else:
            self._json(404, {"NeutronError": {"type": "NotFound", "message": path}})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
