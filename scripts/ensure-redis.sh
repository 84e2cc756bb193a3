#!/usr/bin/env bash
# Make sure a Redis answers at the given URL (default redis://127.0.0.1:6379).
# Uses a running server when there is one; otherwise starts redis-server on that port (data in
# .paywatch/redis, nothing persisted), installing Debian's redis-server first when it is missing.
# It never stops or reconfigures a server it did not start.
set -euo pipefail

url="${1:-redis://127.0.0.1:6379}"
hostport="${url#*://}"
hostport="${hostport#*@}"
hostport="${hostport%%/*}"
host="${hostport%:*}"
port="${hostport##*:}"
[[ "$host" == "$hostport" ]] && port=6379
[[ -z "$host" || "$host" == "localhost" ]] && host=127.0.0.1

ping() {
    # Plain bash: works without redis-cli.
    (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && IFS= read -r -t 2 line <&3 &&
        [[ "$line" == +PONG* || "$line" == -NOAUTH* ]]) 2>/dev/null
}

if ping; then
    echo "redis: answering at $host:$port"
    exit 0
fi

if [[ "$host" != "127.0.0.1" ]]; then
    echo "redis: nothing answers at $host:$port and it is not local; start it or set REDIS_URL" >&2
    exit 1
fi

if ! command -v redis-server >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "redis: installing Debian's redis-server"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis: redis-server is missing; install it (Debian: sudo apt-get install redis-server)" >&2
        exit 1
    fi
fi

# The package's own service may have started on the default port by now.
if ping; then
    echo "redis: answering at $host:$port"
    exit 0
fi

dir="$(pwd)/.paywatch/redis-$port"
mkdir -p "$dir"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
for _ in $(seq 1 50); do
    if ping; then
        echo "redis: started redis-server on $host:$port (pid file $dir/redis.pid)"
        exit 0
    fi
    sleep 0.1
done
echo "redis: redis-server did not come up; see $dir/redis.log" >&2
exit 1
