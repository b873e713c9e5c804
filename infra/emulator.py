"""Local AWS emulator: moto's server app behind one global request lock.

moto's DynamoDB is not atomic under concurrent requests (two winners of a
conditional transaction were measured in 2 of 100 rounds of 8), so every
request is served while holding one lock, which makes each request atomic as
it is on DynamoDB. TCP_NODELAY avoids the ~40 ms Nagle/delayed-ACK stall that
Python servers add to keep-alive requests.

Usage: emulator.py PORT_FILE   (binds 127.0.0.1 on a free port, writes it to PORT_FILE)
"""

import os
import socket
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

_LOCK = threading.Lock()


class SerialisedApp:
    def __init__(self, app):
        self._app = app

    def __call__(self, environ, start_response):
        with _LOCK:
            # Drain the body inside the lock: moto may build it lazily.
            return list(self._app(environ, start_response))


class NoDelayHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    port_file = sys.argv[1]
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1",
        0,
        SerialisedApp(app),
        threaded=True,
        request_handler=NoDelayHandler,
    )
    # Written atomically: the launcher polls for the file.
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
