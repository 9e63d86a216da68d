"""An application instrumented with OpenTelemetry calls vLLM through the inferscope gateway,
and the application, the gateway and vLLM make one trace.

`opentelemetry-instrumentation-openai-v2` records each call as a CLIENT span but sends no
`traceparent`, and `openai` 3.x sends its requests with `httpx2`, which
`opentelemetry-instrumentation-httpx` does not instrument (it patches `httpx`). So the trace
context goes on the wire through a request hook on the client's `httpx2` client: two lines.

    pip install -r requirements.txt
    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 python app.py http://127.0.0.1:9000/v1

With `--print-spans` the application's own spans are also printed as JSON lines.
"""

import json
import os
import sys

import openai
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def inject_trace_context(request):
    """httpx2 request hook: the current span's context as `traceparent`/`tracestate`."""
    propagate.inject(request.headers)


def main():
    base_url = sys.argv[1]
    model = os.environ.get("MODEL", "tiny-llama")
    provider = TracerProvider(resource=Resource.create({"service.name": "my-app"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument()

    client = openai.OpenAI(
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY", "sk-example"),
        http_client=openai.DefaultHttpx2Client(event_hooks={"request": [inject_trace_context]}),
    )
    tracer = trace.get_tracer("my-app")
    with tracer.start_as_current_span("answer the user"):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=6
        )
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "stream it"}],
            max_tokens=6,
            stream=True,
        )
        for _ in stream:
            pass
    provider.shutdown()
    if "--print-spans" in sys.argv:
        for s in memory.get_finished_spans():
            print(
                json.dumps(
                    {
                        "name": s.name,
                        "trace_id": format(s.context.trace_id, "032x"),
                        "span_id": format(s.context.span_id, "016x"),
                        "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                        "kind": s.kind.name,
                        "attributes": {k: v for k, v in s.attributes.items() if isinstance(v, (int, float, str))},
                    }
                )
            )


if __name__ == "__main__":
    main()
