"""Runs the OTLP receivers of PyPI's `oteltest` (its `otelsink`: GrpcSink or HttpSink) on
127.0.0.1:PORT and prints every trace export it receives as one JSON line on stdout:
{"headers": {...}, "request": <ExportTraceServiceRequest as protobuf JSON>}, and every metrics
export as {"signal": "metrics", "headers": {...}, "request": <ExportMetricsServiceRequest>}.

Two adjustments, nothing else: the sinks bind every interface by default, and this script
narrows them to loopback; and oteltest looks up `Content-Type` case-sensitively in a plain
dict, so a client that sends the lowercase `content-type` (hyper does; header names are
case-insensitive per RFC 9110) has its JSON body parsed as protobuf. The lookup is made
case-insensitive.
Prints READY on stderr once listening; exits when stdin closes.
"""

import argparse
import json
import logging
import sys
import threading

import grpc
from google.protobuf.json_format import MessageToDict

import oteltest.sink as sink
from oteltest.sink.handler import RequestHandler

_grpc_server = grpc.server


class _LoopbackGrpc:
    def __init__(self, server):
        self._server = server

    def add_insecure_port(self, address):
        return self._server.add_insecure_port(address.replace("0.0.0.0", "127.0.0.1"))

    def __getattr__(self, name):
        return getattr(self._server, name)


class _LoopbackHttp(sink.HTTPServer):
    def __init__(self, address, handler):
        super().__init__(("127.0.0.1", address[1]), handler)


def _is_json_content_type(headers):
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    return "application/json" in lowered.get("content-type", "").lower()


sink.grpc.server = lambda *a, **k: _LoopbackGrpc(_grpc_server(*a, **k))
sink._is_json_content_type = _is_json_content_type
sink.HTTPServer = _LoopbackHttp

_lock = threading.Lock()


class JsonLines(RequestHandler):
    def handle_trace(self, request, headers):
        line = json.dumps(
            {
                "headers": {str(k).lower(): str(v) for k, v in dict(headers or {}).items()},
                "request": MessageToDict(request),
            }
        )
        with _lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def handle_logs(self, request, headers):
        pass

    def handle_metrics(self, request, headers):
        line = json.dumps(
            {
                "signal": "metrics",
                "headers": {str(k).lower(): str(v) for k, v in dict(headers or {}).items()},
                "request": MessageToDict(request),
            }
        )
        with _lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc", type=int)
    parser.add_argument("--http", type=int)
    args = parser.parse_args()
    logger = logging.getLogger("oteltest_sink")
    if args.grpc:
        server = sink.GrpcSink(JsonLines(), logger, port=args.grpc)
    else:
        server = sink.HttpSink(JsonLines(), logger, port=args.http)
    server.start()
    sys.stderr.write("READY\n")
    sys.stderr.flush()
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
