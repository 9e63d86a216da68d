# Shared by the bench scripts (sourced): loopback ports, waiting for a server, and the traced
# gateway's exporter counters.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { for _ in $(seq 1 600); do curl -fs -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "not up: $1" >&2; return 1; }

# exporter_counts ADMIN_PORT FILE: the gateway's exporter counters once its queue has drained
# (every span it made is then exported, failed or dropped; waits up to a minute), as JSON in
# FILE. Counters per exporter carry a label (`{exporter="otlp"}`): summed over exporters. The
# ingest and exporter counters also go to stderr.
exporter_counts() {
  local text=
  for _ in $(seq 1 300); do
    text=$(curl -fs "http://127.0.0.1:$1/metrics" || true)
    grep -q '^inferscope_exporter_queued_spans 0$' <<<"$text" && break
    sleep 0.2
  done
  awk '/^inferscope_exporter_[a-z_]+(\{[^}]*\})? [0-9]+$/ { k=$1; sub(/^inferscope_exporter_/, "", k); sub(/\{.*\}/, "", k); if (!(k in v)) order[n++]=k; v[k]+=$2 }
       END { printf "{"; for (i=0; i<n; i++) printf "%s\"%s\": %s", (i ? ", " : ""), order[i], v[order[i]]; print "}" }' \
    <<<"$text" > "$2"
  grep -E '^inferscope_(ingest|exporter)_[a-z_]+(\{[^}]*\})? [0-9]+$' <<<"$text" | sed 's/^/  /' >&2 || true
}
