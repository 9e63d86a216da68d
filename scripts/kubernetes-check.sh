#!/usr/bin/env bash
# Renders deploy/kubernetes (the base and every overlay) with Debian's kubectl
# (`kubectl kustomize`, package kubernetes-client, unpacked into target/ without root) and
# validates every object with kubernetes-validate (PyPI) against Kubernetes $K8S_VERSION,
# strictly (unknown fields fail). A kubectl already on PATH renders too, and must agree.
# Then the wiring is checked: each Service's named target port exists in the pods it
# selects; each `--upstream`, `--otlp-traces-endpoint` and `OTEL_EXPORTER_OTLP_ENDPOINT`
# reaches a listener (in the same pod on 127.0.0.1, or through a Service); the sidecar is
# native (an init container with restartPolicy: Always) with /readyz and /healthz probes.
# A broken object must fail validation (the check is not vacuous). Part of .ci/run.
#   bash scripts/kubernetes-check.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
K8S_VERSION=${K8S_VERSION:-1.33.0}
tools=$root/target/k8s-tools
mkdir -p "$tools"
req=$root/scripts/kubernetes-requirements.txt
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$tools/venv/bin/kubernetes-validate" ] || [ "$(cat "$tools/venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$tools/venv"
  bash "$root/scripts/pip-install.sh" "$tools/venv" "kubernetes-validate and its schemas (about 40 MB)" -r "$req"
  echo "$want" >"$tools/venv/.requirements.sha256"
fi
if [ ! -x "$tools/debian/usr/bin/kubectl" ]; then
  echo "fetching Debian's kubectl (package kubernetes-client) into $tools/debian" >&2
  (cd "$tools" && rm -f kubernetes-client_*.deb && apt-get download -qq kubernetes-client 2>/dev/null \
    && dpkg -x kubernetes-client_*.deb debian)
fi
kubectls=()
[ -x "$tools/debian/usr/bin/kubectl" ] && kubectls+=("$tools/debian/usr/bin/kubectl")
if command -v kubectl >/dev/null && [ "$(command -v kubectl)" != "$tools/debian/usr/bin/kubectl" ]; then
  kubectls+=("$(command -v kubectl)")
fi
[ ${#kubectls[@]} -gt 0 ] || { echo "no kubectl: Debian's kubernetes-client could not be fetched" >&2; exit 1; }

out=$root/target/k8s-rendered
rm -rf "$out"; mkdir -p "$out"
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  name=$(basename "$dir")
  for i in "${!kubectls[@]}"; do
    "${kubectls[$i]}" kustomize "$dir" >"$out/$name.$i.yaml" 2>"$out/$name.$i.err" \
      || { cat "$out/$name.$i.err" >&2; echo "kubectl kustomize $dir failed (${kubectls[$i]})" >&2; exit 1; }
  done
  echo "rendered $dir with: ${kubectls[*]}" >&2
done
"$tools/venv/bin/python" - "$out" "$K8S_VERSION" "${#kubectls[@]}" <<'PY'
import glob, os, re, subprocess, sys
import yaml
out, version, renderers = sys.argv[1], sys.argv[2], int(sys.argv[3])
validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
failures = []
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)

def run_validate(path):
    r = subprocess.run([validate, "--strict", "--quiet", "-k", version, path], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()

def pods(objs):
    """(workload, pod template) for every object that runs pods."""
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
            yield o, o["spec"]["template"]

def containers(template):
    spec = template["spec"]
    return spec.get("initContainers", []) + spec.get("containers", [])

def args_and_env(c):
    for a in c.get("args", []) + c.get("command", []):
        yield a
    for e in c.get("env", []):
        if "value" in e:
            yield f"{e['name']}={e['value']}"

names = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(f"{out}/*.0.yaml")})
for name in names:
    docs = [list(yaml.safe_load_all(open(f"{out}/{name}.{i}.yaml"))) for i in range(renderers)]
    key = lambda d: (d["kind"], d["metadata"]["name"])
    objs = docs[0]
    check(all(d and "kind" in d for d in objs), f"{name}: every rendered document is an object")
    for other in docs[1:]:
        check(sorted(other, key=key) == sorted(objs, key=key), f"{name}: every kubectl renders the same objects")
    ok, text = run_validate(f"{out}/{name}.0.yaml")
    check(ok, f"{name}: {len(objs)} objects valid for Kubernetes {version} (strict)" + ("" if ok else "\n" + text))
    services = [o for o in objs if o["kind"] == "Service"]
    workloads = list(pods(objs))
    # Services: the selected pods have each named target port.
    for s in services:
        sel = s["spec"]["selector"]
        chosen = [t for _, t in workloads if all(t["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        check(bool(chosen), f"{name}: Service {s['metadata']['name']} selects pods")
        for p in s["spec"]["ports"]:
            tp = p["targetPort"]
            has = all(any(cp.get("name") == tp or cp.get("containerPort") == tp for c in containers(t) for cp in c.get("ports", [])) for t in chosen)
            check(has, f"{name}: Service {s['metadata']['name']} port {p['port']} -> {tp} exists in its pods")
    # Every address a container is told to reach is listened on.
    def listens(t, port):
        for c in containers(t):
            for cp in c.get("ports", []):
                if cp.get("containerPort") == port:
                    return True
            for a in args_and_env(c):
                m = re.match(r"--(listen|admin|otlp-ingest-grpc|otlp-ingest-http|port)=(?:[\d.]+:)?(\d+)$", a)
                if m and int(m.group(2)) == port:
                    return True
        return False
    for w, t in workloads:
        for c in containers(t):
            for a in args_and_env(c):
                m = re.match(r"(--upstream|--otlp-traces-endpoint|OTEL_EXPORTER_OTLP_ENDPOINT)=https?://([^:/]+):(\d+)", a)
                if not m:
                    continue
                what, host, port = m.group(1), m.group(2), int(m.group(3))
                if host in ("127.0.0.1", "localhost"):
                    ok = listens(t, port)
                else:
                    svc = [s for s in services if s["metadata"]["name"] == host and any(p["port"] == port for p in s["spec"]["ports"])]
                    ok = bool(svc)
                check(ok, f"{name}: {w['metadata']['name']}/{c['name']} {what} {host}:{port} is listened on")
    # The gateway: native sidecar or its own workload, probed on the admin port.
    gateways = [(w, c) for w, t in workloads for c in containers(t) if "serve" in c.get("args", [])]
    check(bool(gateways), f"{name}: a gateway runs")
    for w, c in gateways:
        if c in w["spec"]["template"]["spec"].get("initContainers", []):
            check(c.get("restartPolicy") == "Always", f"{name}: the sidecar is native (restartPolicy: Always)")
        check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz"
              and c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
              f"{name}: {w['metadata']['name']} probes /readyz and /healthz")
        check("requests" in c.get("resources", {}), f"{name}: {w['metadata']['name']} requests resources")
    # Every image is a full reference (an unrewritten `inferscope` would pull docker.io's).
    for w, t in workloads:
        for c in containers(t):
            img = c.get("image", "")
            check("/" in img and ":" in img.rsplit("/", 1)[-1],
                  f"{name}: {w['metadata']['name']}/{c['name']} image {img} is a full reference")
            # $(VAR) in an env value expands only variables defined before it.
            defined = set()
            for e in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
                    check(ref in defined, f"{name}: {w['metadata']['name']}/{c['name']} {e['name']} uses $({ref}) defined before it")
                defined.add(e["name"])
    engines = [c for _, t in workloads for c in containers(t) if c["name"] == "vllm"]
    check(all(any(a.startswith("--otlp-traces-endpoint=") for a in c["args"]) for c in engines),
          f"{name}: vLLM exports its spans")
    # A vLLM that a Service reaches directly must say when it is ready (the model loaded).
    direct = any(p["targetPort"] == "engine" for s in services for p in s["spec"]["ports"])
    if direct:
        check(all(c.get("readinessProbe") for c in engines), f"{name}: vLLM has a readiness probe")

# The validation is not vacuous: an unknown field and a wrong type fail.
broken = f"{out}/broken.yaml"
obj = yaml.safe_load(open(f"{out}/base.0.yaml").read().split("\n---\n")[0])
obj["spec"] = {"replicas": "two"} if obj["kind"] != "ConfigMap" else None
obj["data"] = {"x": 1}
obj["unknownField"] = True
yaml.safe_dump(obj, open(broken, "w"))
ok, _ = run_validate(broken)
check(not ok, "a broken object fails validation")
raise SystemExit(1 if failures else 0)
PY
echo "kubernetes manifests ok" >&2
