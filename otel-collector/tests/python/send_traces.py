"""Sends traces with the Python OpenTelemetry SDK, as an independent client.

Each trace has a root span and children with explicit timestamps. Every
`--error-every`th trace has a failing child, every `--slow-every`th a root
lasting 1.5 s; the rest are routine (about 20 ms). Prints one JSON line per
trace: {"trace_id", "kind", "spans"}.
"""
import argparse
import json
import random
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

parser = argparse.ArgumentParser()
parser.add_argument("--grpc", help="host:port of an OTLP/gRPC receiver")
parser.add_argument("--http", help="URL of an OTLP/HTTP traces endpoint")
parser.add_argument("--traces", type=int, default=100)
parser.add_argument("--spans", type=int, default=4, help="spans per trace")
parser.add_argument("--error-every", type=int, default=10)
parser.add_argument("--slow-every", type=int, default=7)
parser.add_argument("--batch", type=int, default=512, help="spans per export request")
parser.add_argument("--service", default="py-sender")
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--ca", help="PEM CA file: export over TLS, trusting it")
parser.add_argument("--header", action="append", default=[], help="name=value sent with every export")
parser.add_argument("--compression", choices=["none", "gzip"], default="none", help="request compression")
args = parser.parse_args()
headers = dict(h.split("=", 1) for h in args.header)
if args.ca:
    import os

    # requests lets these override the CA it is given; --ca is the one to trust.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)

if args.grpc:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from grpc import Compression

    compression = Compression.Gzip if args.compression == "gzip" else Compression.NoCompression

    if args.ca:
        import grpc

        with open(args.ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        exporter = OTLPSpanExporter(
            endpoint=args.grpc,
            insecure=False,
            credentials=credentials,
            headers=tuple(headers.items()),
            compression=compression,
        )
    else:
        exporter = OTLPSpanExporter(
            endpoint=args.grpc, insecure=True, headers=tuple(headers.items()), compression=compression
        )
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    compression = Compression.Gzip if args.compression == "gzip" else Compression.NoCompression
    exporter = OTLPSpanExporter(
        endpoint=args.http, certificate_file=args.ca or None, headers=headers, compression=compression
    )

provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
provider.add_span_processor(
    BatchSpanProcessor(exporter, max_export_batch_size=args.batch, max_queue_size=1_000_000, schedule_delay_millis=200)
)
tracer = provider.get_tracer("send_traces")
rng = random.Random(args.seed)

now = time.time_ns()
for i in range(args.traces):
    kind = "routine"
    if i % args.error_every == 0:
        kind = "error"
    elif i % args.slow_every == 0:
        kind = "slow"
    start = now - 5_000_000_000 + i * 1000
    total = 1_500_000_000 if kind == "slow" else 20_000_000
    root = tracer.start_span(f"GET /item/{i}", kind=SpanKind.SERVER, start_time=start)
    ctx = set_span_in_context(root)
    for k in range(args.spans - 1):
        child = tracer.start_span(f"step-{k}", context=ctx, start_time=start + (k + 1) * 1_000_000)
        child.set_attribute("step", k)
        child.set_attribute("shard", rng.randrange(16))
        if kind == "error" and k == args.spans - 2:
            child.set_status(Status(StatusCode.ERROR, "backend failed"))
        child.end(end_time=start + (k + 1) * 1_000_000 + 500_000)
    root.end(end_time=start + total)
    print(json.dumps({"trace_id": format(root.get_span_context().trace_id, "032x"), "kind": kind, "spans": args.spans}))

provider.shutdown()
