#!/usr/bin/env python3
"""A fast local sink for exporter benchmarks: accepts POSTs (Zipkin /api/v2/spans, OTLP/HTTP /v1/traces),
reads and discards the body, answers 202. Counts requests and bytes; prints them on SIGTERM.

    bench/sink.py PORT
"""
import http.server
import signal
import sys
import threading

counts = {"requests": 0, "bytes": 0}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
        with lock:
            counts["requests"] += 1
            counts["bytes"] += length
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)

    def stop(*_):
        print(f"sink: requests={counts['requests']} bytes={counts['bytes']}", flush=True)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
