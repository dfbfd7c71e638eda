#!/usr/bin/env bash
# Builds the Lambda's `bootstrap` (cloud-lambda's atelier-lambda binary) with
# cargo lambda into target/lambda/atelier-lambda/, for ATELIER_LAMBDA_ARCH
# (x86_64 by default; arm64 on Graviton, as amplify.yml deploys). Installs
# Rust with rustup and cargo-lambda from PyPI when they are missing (the
# Amplify build image has neither). backend.ts refuses a bootstrap that is
# missing or built for the other architecture.
set -euo pipefail
cd "$(dirname "$0")/../.."

arch="${ATELIER_LAMBDA_ARCH:-x86_64}"
case "$arch" in
    x86_64) flag=--x86-64 target=x86_64-unknown-linux-gnu ;;
    arm64) flag=--arm64 target=aarch64-unknown-linux-gnu ;;
    *) echo "ATELIER_LAMBDA_ARCH=$arch: use x86_64 or arm64" >&2; exit 2 ;;
esac

if ! command -v cargo >/dev/null; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null; then rustup target add "$target"; fi
if ! command -v cargo-lambda >/dev/null; then
    python3 -m pip install --user cargo-lambda
    export PATH="$HOME/.local/bin:$PATH"
fi

CARGO_TARGET_DIR=target cargo lambda build --release "$flag" -p cloud-lambda --bin atelier-lambda
ls -l target/lambda/atelier-lambda/bootstrap
