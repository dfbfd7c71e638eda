#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI) against /openapi.json of a
# running `atelier-cloud serve` (embedded backend, jobs on, no provider
# keys, so nothing leaves the machine), every check on. Fails on any
# failure: a 5xx, a response that breaks the document, a refused valid or
# an accepted invalid request (see tests/schemathesis.toml).
#
# Schemathesis lives in one virtual environment outside the clone,
# ~/.cache/atelier/venv (made here when missing; pip from PyPI only).
# Needs the debug `atelier-cloud` binary (`cargo build --bins`).
# ST_MAX_TIME bounds the run (seconds, default 90).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="$HOME/.cache/atelier/venv"
SCHEMATHESIS_VERSION="4.32.5"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/debug/atelier-cloud"
DATA="$(mktemp -d)"
PORT="${ST_PORT:-18799}"
cleanup() {
    if [[ -n "${SERVER:-}" ]]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

# The token first: it creates the signing key the server then loads.
TOKEN="$("$BIN" dev-token --data "$DATA" --user schemathesis)"

# No provider keys, and providers pointed at a closed local port: a tool
# request fails at once with a readable reason, never reaching the internet.
env -u GEMINI_API_KEY -u REPLICATE_API_TOKEN -u REPLICATE_WEBHOOK_SECRET \
    ATELIER_GEMINI_BASE_URL=http://127.0.0.1:9 ATELIER_REPLICATE_BASE_URL=http://127.0.0.1:9 \
    "$BIN" serve --data "$DATA" --addr "127.0.0.1:$PORT" --requests-per-minute off \
    >"$DATA/serve.log" 2>&1 &
SERVER=$!

"$VENV/bin/schemathesis" --config-file tests/schemathesis.toml run \
    "http://127.0.0.1:$PORT/openapi.json" \
    --wait-for-schema 30 \
    --checks all \
    --header "Authorization: Bearer $TOKEN" \
    --max-time "${ST_MAX_TIME:-90}" \
    --seed "${ST_SEED:-20261129}" \
    --no-color
