// An application using the official `openai` JavaScript SDK calls vLLM through the inferscope
// gateway, and the application, the gateway and vLLM make one trace.
//
// The SDK sends its requests with Node's fetch (undici). OpenTelemetry's undici
// instrumentation gives each request a CLIENT span and puts its `traceparent` on the wire; the
// gateway continues that trace.
//
//   npm ci
//   node app.mjs http://127.0.0.1:9000/v1 [--print-spans]
//
// Swap the in-memory exporter for an OTLP one (@opentelemetry/exporter-trace-otlp-http) to
// send the application's spans to your backend.
import { SpanKind, context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { UndiciInstrumentation } from "@opentelemetry/instrumentation-undici";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";

const memory = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
// Without a global propagator nothing goes on the wire (the API's default is a no-op).
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
trace.setGlobalTracerProvider(provider);
registerInstrumentations({ instrumentations: [new UndiciInstrumentation()] });

// Imported after the instrumentation is registered.
const { default: OpenAI } = await import("openai");
const client = new OpenAI({ baseURL: process.argv[2], apiKey: process.env.OPENAI_API_KEY ?? "sk-example" });
const tracer = trace.getTracer("my-app");

await tracer.startActiveSpan("answer the user", async (root) => {
  await client.chat.completions.create({
    model: process.env.MODEL ?? "tiny-llama",
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 6,
  });
  const stream = await client.chat.completions.create({
    model: process.env.MODEL ?? "tiny-llama",
    messages: [{ role: "user", content: "stream it" }],
    max_tokens: 6,
    stream: true,
  });
  for await (const _ of stream) {
    // read it all
  }
  root.end();
});
await provider.forceFlush();
if (process.argv.includes("--print-spans")) {
  for (const s of memory.getFinishedSpans()) {
    const parent = s.parentSpanContext?.spanId ?? null;
    console.log(JSON.stringify({
      name: s.name, trace_id: s.spanContext().traceId, span_id: s.spanContext().spanId,
      parent_id: parent, kind: SpanKind[s.kind],
    }));
  }
}
