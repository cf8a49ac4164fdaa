#!/usr/bin/env bash
# The demo command (README): shows walrus turning PostgreSQL changes into Debezium-format
# events on stdout, with nothing to set up beforehand.
#
#   1. installs the PostgreSQL server if missing (scripts/install-deps.sh --postgres-only);
#   2. starts a throwaway server in a temp dir (wal_level=logical, a free port on 127.0.0.1;
#      as root, the server runs as the `postgres` user, since PostgreSQL refuses root);
#   3. creates an `orders` table and a walrus.toml with the stdout sink;
#   4. runs walrus, then a short workload with psql: inserts, an update, a delete;
#   5. lets the events print, stops walrus with SIGINT, stops PostgreSQL and deletes the temp
#      dir (also on Ctrl-C or failure).
#
# Our own messages go to stderr prefixed with "demo:"; stdout carries only walrus's events.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { echo "demo: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

say "checking for PostgreSQL (installing it if missing)"
./scripts/install-deps.sh --postgres-only >&2
bindir="$(./scripts/install-deps.sh --print-pg-bindir)" || die "no PostgreSQL server binaries found"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/walrus-demo.XXXXXX")"
walrus_pid=""
pg_started=0

# initdb, pg_ctl and postgres refuse to run as root: as root, run them as an unprivileged user
# (the one Debian's package creates, else one of our own, else nobody), as walrus-testkit does.
pg_user=""
if [ "$(id -u)" -eq 0 ]; then
    for candidate in "${WALRUS_PG_USER:-}" postgres walrus-pg; do
        if [ -n "$candidate" ] && id -u "$candidate" >/dev/null 2>&1; then
            pg_user="$candidate"
            break
        fi
    done
    if [ -z "$pg_user" ]; then
        useradd --system --no-create-home --shell /usr/sbin/nologin walrus-pg 2>/dev/null || true
        if id -u walrus-pg >/dev/null 2>&1; then pg_user=walrus-pg; else pg_user=nobody; fi
    fi
    # The server user must reach the temp dir: mktemp made it 0700 for root.
    chown "$pg_user:" "$tmp"
fi

as_pg() {
    if [ -n "$pg_user" ]; then
        runuser -u "$pg_user" -- "$@"
    else
        "$@"
    fi
}

cleanup() {
    local status=$?
    if [ -n "$walrus_pid" ] && kill -0 "$walrus_pid" 2>/dev/null; then
        kill -INT "$walrus_pid" 2>/dev/null || true
        wait "$walrus_pid" 2>/dev/null || true
    fi
    if [ "$pg_started" = 1 ]; then
        say "stopping PostgreSQL"
        as_pg "$bindir/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 ||
            as_pg "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nobody listens on right now. Another process may take it before the server
# binds it, which is why the start below retries on a new port.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        # A refused connection means nothing listens there.
        if ! (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    return 1
}

say "initialising a PostgreSQL cluster in $tmp/data"
as_pg "$bindir/initdb" -D "$tmp/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null ||
    die "initdb failed"

started=0
for attempt in 1 2 3 4 5; do
    port="$(free_port)" || die "found no free TCP port"
    cat >"$tmp/walrus-demo.conf" <<EOF
# Written by scripts/demo.sh.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 100
# A demo never survives an OS crash, so durability is only cost here.
fsync = off
synchronous_commit = off
full_page_writes = off
lc_messages = 'C'
EOF
    chmod 644 "$tmp/walrus-demo.conf"
    if ! grep -q "walrus-demo.conf" "$tmp/data/postgresql.conf"; then
        echo "include = '$tmp/walrus-demo.conf'" >>"$tmp/data/postgresql.conf"
    fi
    if as_pg "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w -t 60 start >/dev/null; then
        started=1
        pg_started=1
        break
    fi
    if grep -q "Address already in use" "$tmp/postgres.log"; then
        say "port $port was taken (attempt $attempt); trying another"
        continue
    fi
    tail -n 30 "$tmp/postgres.log" >&2 || true
    die "PostgreSQL did not start"
done
[ "$started" = 1 ] || die "PostgreSQL did not start after 5 ports"
say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') listening on 127.0.0.1:$port"

psql_demo() {
    "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

say "creating table orders"
psql_demo <<'SQL'
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer text,
    amount numeric(10, 2),
    status text,
    created_at timestamptz DEFAULT now()
);
SQL

cat >"$tmp/walrus.toml" <<EOF
topic_prefix = "demo"

[source]
url = "postgres://postgres@127.0.0.1:$port/postgres"
slot = "walrus_demo"
publication = "walrus_demo"
tables = ["public.*"]

[sink]
type = "stdout"
EOF
say "walrus config ($tmp/walrus.toml):"
sed 's/^/demo:   /' "$tmp/walrus.toml" >&2

# Build first, so the workload does not start while cargo is still compiling.
say "building walrus (release)"
cargo build --release --quiet

say "starting walrus"
# A background job of a script starts with SIGINT ignored; `trap - INT` gives it back the
# default, so the SIGINT below (and Ctrl-C) reaches walrus. cargo run execs the binary, so the
# pid is walrus's own.
(
    trap - INT
    exec cargo run --release --quiet -- run --config "$tmp/walrus.toml"
) &
walrus_pid=$!

# Changes made before walrus's slot exists would not be streamed: wait for it.
for _ in $(seq 1 60); do
    kill -0 "$walrus_pid" 2>/dev/null || die "walrus exited before creating its replication slot"
    slots="$(psql_demo -At -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'walrus_demo'")"
    [ "$slots" = 1 ] && break
    sleep 1
done
[ "$slots" = 1 ] || die "walrus did not create replication slot walrus_demo within 60 s"
say "walrus is streaming; running the workload"

run_sql() {
    say "SQL> $1"
    psql_demo -c "$1" >/dev/null
    sleep 2
}
run_sql "INSERT INTO orders (customer, amount, status) VALUES ('alice', 19.99, 'new')"
run_sql "INSERT INTO orders (customer, amount, status) VALUES ('bob', 5.00, 'new'), ('carol', 120.50, 'new')"
run_sql "UPDATE orders SET status = 'shipped' WHERE customer = 'alice'"
run_sql "DELETE FROM orders WHERE customer = 'bob'"

say "stopping walrus (SIGINT)"
kill -INT "$walrus_pid"
wait "$walrus_pid" || say "walrus exited with status $?"
walrus_pid=""
say "done"
