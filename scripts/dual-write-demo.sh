#!/usr/bin/env bash
# The dual-write scenario in one command (README, docs/outbox.md): an order service writing
# each order with a transactional outbox relayed by walrus, and the same service writing
# naively (commit, then publish), side by side, through a frozen broker and a walrus crash.
#
#   1. installs the PostgreSQL server and build packages if missing
#      (scripts/install-deps.sh --postgres-only) and Apache Kafka's jars if
#      missing (scripts/install-deps.sh --kafka-only: Java and Maven from apt, the jars from
#      Maven Central, once);
#   2. builds walrus and the example (`cargo build --release`);
#   3. runs `walrus-example-orders scenario` (examples/orders): a throwaway PostgreSQL and
#      Apache Kafka broker (walrus-testkit), the real walrus binary, N orders per service at a
#      steady rate, the broker frozen (SIGSTOP) in the middle, walrus killed (kill -9) and
#      restarted once, then prints the table: orders written, fulfilled, fulfilled twice
#      before dedupe, duplicates suppressed, lost — outbox path and naive path.
#
# Arguments go to the scenario: --orders 300 --rate 10 --freeze-after 10 --freeze-for 8
# --publish-timeout 2 (seconds). Progress goes to stderr, the table to stdout. The naive
# service's "publish failed; answering success" warnings are what a real service would log;
# RUST_LOG=error hides them.
set -euo pipefail

cd "$(dirname "$0")/.."

say() { echo "dual-write-demo: $*" >&2; }

say "checking for PostgreSQL (installing it if missing)"
./scripts/install-deps.sh --postgres-only >&2
say "checking for Apache Kafka (fetching its jars if missing)"
./scripts/install-deps.sh --kafka-only >&2

say "building walrus and the example (release)"
cargo build --release -p walrus --bin walrus >&2
cargo build --release -p walrus-example-orders --bin walrus-example-orders >&2

exec ./target/release/walrus-example-orders scenario --walrus ./target/release/walrus "$@"
