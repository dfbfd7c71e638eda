#!/usr/bin/env bash
# Fuzzing (cargo fuzz, libFuzzer) of every decoder that takes bytes from
# outside: runs each target of tests/fuzz for a bounded time, starting from
# its committed seeds (tests/fuzz/seeds/<target>) and the corpus earlier
# runs grew (~/.cache/atelier/fuzz/corpus/<target>), then prints a table of
# executions per target. Fails if any target found a crash, a broken
# property, a timeout or a runaway allocation; the input is kept under
# ~/.cache/atelier/fuzz/artifacts/<target>/ and the command to replay it is
# printed. Every finding becomes an ordinary regression test next to the
# code it broke.
#
#   bash tests/fuzz.sh                 every target, FUZZ_SECONDS each (default 10)
#   FUZZ_SECONDS=600 bash tests/fuzz.sh chunks rest   longer, by hand
#   FUZZ_BUILD=smoke bash tests/fuzz.sh   the quick-to-build run of tests/run.sh
#   bash tests/fuzz.sh --seeds         rewrite the seed corpus (examples/make_seeds.rs)
#
# cargo-fuzz is installed from crates.io into ~/.cache/atelier/cargo-fuzz
# when missing. Builds use nightly Rust when rustup has it, else the stable
# toolchain with RUSTC_BOOTSTRAP=1 (it ships the sanitizer runtimes), into
# their own target directory (FUZZ_TARGET_DIR, default
# ~/.cache/atelier-fuzz-target) so the shared stable cache is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION="0.13.2"
SECONDS_EACH="${FUZZ_SECONDS:-10}"
CACHE="$HOME/.cache/atelier/fuzz"
TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/atelier-fuzz-target}"
FUZZ_DIR="tests/fuzz"
# The machine's cargo-fuzz wins only if it is the pinned version.
export PATH="$HOME/.cache/atelier/cargo-fuzz/bin:$PATH"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io) into ~/.cache/atelier/cargo-fuzz" >&2
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
        --root "$HOME/.cache/atelier/cargo-fuzz"
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    TOOLCHAIN=(+nightly)
else
    echo "no nightly toolchain: building with stable and RUSTC_BOOTSTRAP=1" >&2
    TOOLCHAIN=()
    export RUSTC_BOOTSTRAP=1
fi

if [[ "${1:-}" == "--seeds" ]]; then
    # A plain (uninstrumented) debug build: the shared target directory
    # already holds most of it.
    cargo run --manifest-path "$FUZZ_DIR/Cargo.toml" \
        --target-dir "${CARGO_TARGET_DIR:-$HOME/.cache/atelier-target}" --example make-seeds
    exit 0
fi

TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    mapfile -t TARGETS < <(ls "$FUZZ_DIR/fuzz_targets" | sed 's/\.rs$//')
fi

# By hand: release with debug assertions and the address sanitizer (the
# fastest executions, the slowest cold build). FUZZ_BUILD=smoke (what
# tests/run.sh uses): a debug build without the sanitizer, which a cold
# machine builds in a fraction of the time; the same targets, seeds and
# checks, fewer executions per second.
case "${FUZZ_BUILD:-release}" in
    release) BUILD=(--release --debug-assertions) ;;
    smoke) BUILD=(--dev --sanitizer none) ;;
    *) echo "FUZZ_BUILD is release or smoke" >&2; exit 2 ;;
esac
cargo "${TOOLCHAIN[@]}" fuzz build --fuzz-dir "$FUZZ_DIR" --target-dir "$TARGET_DIR" "${BUILD[@]}"

failed=()
rows=()
for target in "${TARGETS[@]}"; do
    corpus="$CACHE/corpus/$target"
    artifacts="$CACHE/artifacts/$target/"
    mkdir -p "$corpus" "$artifacts"
    log="$CACHE/$target.log"
    status=0
    # Seeds are read, never written: new inputs go to the cache's corpus.
    cargo "${TOOLCHAIN[@]}" fuzz run --fuzz-dir "$FUZZ_DIR" --target-dir "$TARGET_DIR" \
        "${BUILD[@]}" "$target" "$corpus" "$FUZZ_DIR/seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=1048576 -artifact_prefix="$artifacts" -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    # The scratch directories the rest and backup targets kept (databases
    # in /dev/shm, or the temporary directory where there is none).
    rm -rf /dev/shm/atelier-fuzz-* "${TMPDIR:-/tmp}"/atelier-fuzz-*
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    if [[ "$status" -eq 0 ]]; then
        rows+=("$(printf '%-14s %10s %10s %8s  ok' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
    else
        failed+=("$target")
        rows+=("$(printf '%-14s %10s %10s %8s  FAILED' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}")")
        echo "---- $target failed (exit $status); the end of its log ($log):" >&2
        tail -40 "$log" >&2
        artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //')
        if [[ -n "$artifact" ]]; then
            echo "replay: cargo +nightly fuzz run --fuzz-dir $FUZZ_DIR ${BUILD[*]} $target $artifact" >&2
        fi
    fi
done

printf '\n%s s per target\n%-14s %10s %10s %8s  %s\n' "$SECONDS_EACH" target executions "exec/s" edges result
printf '%s\n' "${rows[@]}"
echo "fuzz: $(( ${#TARGETS[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
[[ ${#failed[@]} -eq 0 ]]
