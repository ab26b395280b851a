"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that answers as scripted.

Each POST is kept (headers, raw body) and answered with the next status of `script`
(204 once the script is spent); "hang" answers only after `hang_seconds`, to look like a
receiver that times out. Failing answers carry `RECEIVER_NOTE` in their body, which the
service must never keep anywhere.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVER_NOTE = "receiver-private-detail-7Q"


class ServedInThread:
    """A test HTTP server run on a daemon thread for the length of a `with` block."""

    def serve(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.server.handle_error = lambda *args: None  # a client that gave up (a timeout) is expected
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class Receiver(ServedInThread):
    def __init__(self, script: list[int | str] | None = None, *, delay: float = 0.0, hang_seconds: float = 1.5):
        self.script, self.received = list(script or []), []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.received.append((dict(self.headers), body))
                    answer = receiver.script.pop(0) if receiver.script else 204
                time.sleep(delay)
                if answer == "hang":
                    time.sleep(hang_seconds)
                    answer = 204
                note = RECEIVER_NOTE.encode() if answer >= 300 else b""
                self.send_response(answer)
                self.send_header("Content-Length", str(len(note)))
                self.end_headers()
                self.wfile.write(note)

            def log_message(self, *args):
                pass

        self.serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/reunite"
