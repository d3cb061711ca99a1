"""What the Python relying parties share: serve a Flask app on a random loopback port, say where
(`listening on http://127.0.0.1:PORT`), then read the one JSON line of configuration on stdin (the
provider starts after the app, once its redirect URI is known), as tests/api/rp_libraries.rs runs
them."""

import json
import sys

from werkzeug.serving import make_server


def serve(app, configure):
    """Serves `app` after `configure(settings, origin)` has set it up from stdin's JSON line."""
    server = make_server("127.0.0.1", 0, app)
    origin = f"http://127.0.0.1:{server.server_port}"
    print(f"listening on {origin}", flush=True)
    configure(json.loads(sys.stdin.readline()), origin)
    print("configured", flush=True)
    server.serve_forever()
