#!/usr/bin/env python3
"""The legacy backend: answers every request with the request itself, as JSON.

It listens on 127.0.0.1 only; countersign, sharing its network namespace, is the only way in.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class Echo(BaseHTTPRequestHandler):
    server_version = "legacy-orders/1.0"

    def _echo(self):
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        body = self.rfile.read(length).decode("utf-8", "replace")
        out = {
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "body": body,
        }
        data = (json.dumps(out, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _echo


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    a = p.parse_args()
    ThreadingHTTPServer((a.bind, a.port), Echo).serve_forever()


if __name__ == "__main__":
    main()
