#!/usr/bin/env python3
"""Lists or deletes the JetStream streams of one Motorpool events namespace (streams named
`<NAMESPACE>_<SERVICE>`, upper case), speaking the NATS text protocol directly so nothing but
Python's standard library is needed. Used by deploy/local/cluster.sh to start a cluster on a
shared NATS server from clean streams.

    nats-streams.py nats://127.0.0.1:4222 motorpool_cluster           # list
    nats-streams.py nats://127.0.0.1:4222 motorpool_cluster --delete  # delete
"""

import json
import re
import socket
import sys
import urllib.parse


class Nats:
    def __init__(self, url, timeout=5.0):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=timeout)
        self.buf = b""
        self._line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nPING\r\n')
        while self._line() != b"PONG":
            pass
        self.sock.sendall(b"SUB _INBOX.mpstreams 1\r\n")

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("NATS closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def request(self, subject, payload=b""):
        self.sock.sendall(b"PUB %s _INBOX.mpstreams %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        while True:
            line = self._line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise ConnectionError(line.decode())
            elif line.startswith(b"MSG "):
                data = self._bytes(int(line.split()[-1]))
                return json.loads(data or b"{}")
            elif line.startswith(b"HMSG "):
                parts = line.split()
                hdr, total = int(parts[-2]), int(parts[-1])
                data = self._bytes(total)[hdr:]
                return json.loads(data or b"{}")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, namespace, delete = sys.argv[1], sys.argv[2], "--delete" in sys.argv[3:]
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", namespace + "_").upper()
    nats = Nats(url)
    names, offset = [], 0
    while True:
        r = nats.request("$JS.API.STREAM.NAMES", json.dumps({"offset": offset}).encode())
        if "error" in r:
            raise SystemExit(f"stream names: {r['error']}")
        page = r.get("streams") or []
        names += page
        offset += len(page)
        if not page or offset >= r.get("total", 0):
            break
    for name in sorted(n for n in names if n.startswith(prefix)):
        if delete:
            r = nats.request(f"$JS.API.STREAM.DELETE.{name}")
            if not r.get("success"):
                raise SystemExit(f"delete {name}: {r}")
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
