#!/usr/bin/env bash
# The test command (README, and CI through .ci/run): installs what is missing, then checks
# formatting, lints, doc tests and the whole test suite.
#
# Every check runs even when an earlier one failed, so one run shows every problem; the exit
# status is non-zero if any failed. Works as root (CI) and as a normal user (apt through sudo).
# With $CI set, nextest uses the `ci` profile from .config/nextest.toml.
#
# The suite starts throwaway PostgreSQL servers itself (crates/walrus-testkit); nothing needs to
# be running beforehand.
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

failed=()
# Runs one check, remembering its failure instead of stopping.
check() {
    local name="$1"
    shift
    step "$name: $*"
    if ! "$@"; then
        failed+=("$name")
        echo "==> $name FAILED"
    fi
}

step "install missing dependencies: scripts/install-deps.sh"
./scripts/install-deps.sh

profile=default
if [ -n "${CI:-}" ]; then
    profile=ci
fi

check "format" cargo fmt --all -- --check
check "clippy" cargo clippy --workspace --all-targets -- -D warnings
# Doc tests before the suite, so that the test runner's last words are nextest's summary.
check "doc tests" cargo test --workspace --doc
check "tests" cargo nextest run --workspace --no-fail-fast --profile "$profile"

echo
if [ "${#failed[@]}" -gt 0 ]; then
    echo "==> FAILED: ${failed[*]}"
    exit 1
fi
echo "==> all checks passed (format, clippy, doc tests, tests)"
