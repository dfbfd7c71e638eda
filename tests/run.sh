#!/usr/bin/env bash
# The project's test command (README): installs what the tests need on a
# fresh machine, starts the services they talk to, and runs every test.
# Every test binary runs even when one fails; the run ends with the
# runner's summary of everything that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A shared target cache outside the clone keeps repeat runs warm; a cold one
# works too.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/atelier-target}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "toolchain: $(cargo --version)"

step "system packages (desktop app build, window, Xvfb tests)"
source desktop-slint/deps.sh
ensure_debs $ATELIER_BUILD_DEBS $ATELIER_WINDOW_DEBS $ATELIER_TEST_DEBS

step "JS interop peer (tests/js: the pinned @automerge/automerge from its lock file)"
command -v node >/dev/null && command -v npm >/dev/null || ensure_debs nodejs npm
(cd tests/js && npm ci --cache "$HOME/.cache/atelier/npm" --prefer-offline --no-audit --no-fund)

step "Python test peers (tests/requirements.txt: moto; one venv outside the clone, ~/.cache/atelier/venv)"
# The AWS backend's tests start moto themselves (atelier_fixtures::moto) from
# this venv; made when missing, reused (and topped up) when present.
VENV="$HOME/.cache/atelier/venv"
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    python3 -m venv "$VENV" 2>/dev/null || { ensure_debs python3-venv && python3 -m venv "$VENV"; }
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    --cache-dir "$HOME/.cache/atelier/pip" -r tests/requirements.txt

step "build (debug, all test targets and binaries)"
# --bins: the end-to-end tests run atelier-cloud, atelier-sync and
# atelier-local, which `--tests` alone does not build.
cargo build --workspace --tests --bins --locked
# lambda_local runs the function under `cargo lambda watch`, which builds it
# with `cargo run --bin atelier-lambda` in cloud-lambda/: features resolved
# for that package alone, not unified across the workspace, so other
# artifacts than the build above. Built here (-p: the same resolution), so
# the test finds them fresh instead of compiling inside its time limit (on a
# cold cache it compiled the AWS SDKs and timed out).
cargo build -p cloud-lambda --bin atelier-lambda --locked

step "API property tests (schemathesis against atelier-cloud serve; venv in ~/.cache/atelier/venv)"
# Its result is kept for the end, so the test runner's summary closes the run.
schemathesis_status=0
bash tests/schemathesis.sh || schemathesis_status=$?

step "Amplify backend (amplify/test.sh: npm ci from its lock file, tsc, offline synthesis, template tests; no AWS)"
amplify_status=0
bash amplify/test.sh || amplify_status=$?

step "fuzzing smoke run (tests/fuzz.sh: each cargo-fuzz target ${FUZZ_SECONDS:=10} s; FUZZ=0 skips)"
# A debug build without the sanitizer (FUZZ_BUILD=smoke): a release+ASan
# build of every dependency costs a cold machine far more than the run.
# Its result is kept for the end too. Builds go to their own target
# directory (~/.cache/atelier-fuzz-target).
fuzz_status=0
if [[ "${FUZZ:-1}" != 0 ]]; then
    FUZZ_SECONDS="$FUZZ_SECONDS" FUZZ_BUILD="${FUZZ_BUILD:-smoke}" bash tests/fuzz.sh \
        || fuzz_status=$?
fi

step "test"
# cargo-nextest (on every machine of this kind): one process per test, no
# fail-fast, a per-test timeout, and a final list of failures.
cargo nextest run --workspace --locked --no-fail-fast \
    --config-file tests/nextest.toml \
    --test-threads="${TEST_THREADS:-2}"

if [[ "$fuzz_status" -ne 0 ]]; then
    echo "fuzzing found failures (see above)" >&2
    exit "$fuzz_status"
fi
if [[ "$schemathesis_status" -ne 0 ]]; then
    echo "schemathesis found failures (see above)" >&2
    exit "$schemathesis_status"
fi
if [[ "$amplify_status" -ne 0 ]]; then
    echo "amplify/ tests failed (see above)" >&2
    exit "$amplify_status"
fi
