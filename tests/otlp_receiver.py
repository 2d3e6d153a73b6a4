#!/usr/bin/env python3
"""A real OTLP/HTTP trace receiver for the tests: POST /v1/traces with a protobuf
ExportTraceServiceRequest, decoded with the OpenTelemetry project's classes
(opentelemetry-proto, installed by scripts/tools.sh --test); one JSON line per span appended
to OUT. Usage: otlp_receiver.py PORT OUT (PORT 0: any; prints `listening <port>`)."""
import json, sys, threading

LOCK = threading.Lock()
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

def value(v: AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/traces" or "protobuf" not in self.headers.get("Content-Type", ""):
            self.send_error(404 if self.path != "/v1/traces" else 415)
            return
        req = ExportTraceServiceRequest.FromString(body)
        lines = []
        for rs in req.resource_spans:
            res = {kv.key: value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(json.dumps({
                        "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(), "name": s.name,
                        "service_name": res.get("service.name"), "scope": ss.scope.name,
                        "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                    }) + "\n")
        # One write per request, under a lock: concurrent exports never interleave.
        with LOCK, open(OUT, "a") as out:
            out.write("".join(lines))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):  # quiet
        pass

if __name__ == "__main__":
    OUT = sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()
