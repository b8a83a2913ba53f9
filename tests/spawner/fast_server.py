"""A stand-in single-user server, up in ~50 ms: it answers 200 to every GET.

Spawn race tests start hundreds of servers. What they check (reservations, the
hub's database session, the hub's bookkeeping) happens around the server
process, and a real jupyter-server costs ~4 s here. It is run with the system's
``python3`` and needs only the standard library, so the user's own Unix account
can run it without reading anything of the hub's environment.
"""

import http.server
import os
import signal
import urllib.parse


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    url = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    http.server.ThreadingHTTPServer((url.hostname, url.port), Ok).serve_forever()
