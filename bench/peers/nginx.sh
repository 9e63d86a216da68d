#!/usr/bin/env bash
# Starts nginx (Debian package, installed if missing) as a plain reverse proxy in front of an
# upstream: HTTP/1.1 keep-alive upstream pool, buffering off (streams pass chunk by chunk), one
# worker (the comparison is per core). Prints nginx's master pid; stops with it.
#   bash bench/peers/nginx.sh LISTEN_PORT UPSTREAM_HOST:PORT WORKDIR
set -euo pipefail
port=$1 upstream=$2 dir=$3
if ! command -v nginx >/dev/null; then
  (apt-get install -y -qq nginx || sudo -n apt-get install -y -qq nginx) >/dev/null
fi
mkdir -p "$dir/logs"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream engine { server $upstream; keepalive 1024; }
  server {
    listen 127.0.0.1:$port reuseport backlog=4096;
    location / {
      proxy_pass http://engine;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
CONF
exec nginx -c "$dir/nginx.conf" -p "$dir"
