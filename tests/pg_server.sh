#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL server for the store tests.
#
#   tests/pg_server.sh start DIR [PORT]   prints the URL for FLEETGATE_TEST_POSTGRES_URL
#   tests/pg_server.sh stop DIR
#
# Uses Debian's postgresql package (apt-get install postgresql). The
# server listens on 127.0.0.1 only and keeps its data and socket in DIR.
# initdb refuses to run as root, so as root the cluster belongs to the
# "postgres" user that the Debian package creates.
set -euo pipefail

action=${1:?usage: pg_server.sh start|stop DIR [PORT]}
dir=${2:?usage: pg_server.sh start|stop DIR [PORT]}
port=${3:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "$action" in
start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U fleetgate --auth=trust \
            --encoding=UTF8 --no-locale >"$dir/initdb.log"
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off" \
        start >/dev/null
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U fleetgate fleetgate_test 2>/dev/null || true
    echo "postgresql+psycopg://fleetgate@127.0.0.1:$port/fleetgate_test"
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "invalid action: $action (expected start or stop)" >&2
    exit 2
    ;;
esac
