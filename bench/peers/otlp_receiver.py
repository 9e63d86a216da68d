"""A real OTLP/gRPC receiver for the benchmark: oteltest's GrpcSink (PyPI), bound to loopback,
counting the spans it receives. Prints the counts as JSON on stdout on SIGTERM or SIGINT.
Usage: otlp_receiver.py PORT"""
import json
import logging
import signal
import sys
import threading

import grpc
import oteltest.sink as sink
from oteltest.sink.handler import RequestHandler

_grpc_server = grpc.server


class _Loopback:
    def __init__(self, server):
        self._server = server

    def add_insecure_port(self, address):
        return self._server.add_insecure_port(address.replace("0.0.0.0", "127.0.0.1"))

    def __getattr__(self, name):
        return getattr(self._server, name)


sink.grpc.server = lambda *a, **k: _Loopback(_grpc_server(*a, **k))


class Count(RequestHandler):
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.spans = 0

    def handle_trace(self, request, headers):
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.requests += 1
            self.spans += n

    def handle_logs(self, request, headers):
        pass

    def handle_metrics(self, request, headers):
        pass


def main():
    counter = Count()
    server = sink.GrpcSink(counter, logging.getLogger("receiver"), max_workers=4, port=int(sys.argv[1]))
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sys.stderr.write("READY\n")
    sys.stderr.flush()
    done.wait()
    server.stop()
    print(json.dumps({"requests": counter.requests, "spans": counter.spans}), flush=True)


if __name__ == "__main__":
    main()
