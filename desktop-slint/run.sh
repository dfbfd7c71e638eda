#!/usr/bin/env bash
# The README's main job: the Atelier desktop app on the embedded default
# (local store in the platform data directory, the cloud Router in-process
# on loopback). Installs the system packages it needs when missing, builds
# in release, and opens the window. Arguments go to `atelier` (try --help).
#
# Without a display (a server, a container) it runs on a virtual one (Xvfb)
# and saves a screenshot every 10 s to atelier-screen.png, so you can see it.
set -euo pipefail
cd "$(dirname "$0")/.."
source desktop-slint/deps.sh
ensure_debs $ATELIER_BUILD_DEBS $ATELIER_WINDOW_DEBS
cargo build --release --locked -p desktop-slint --bin atelier
bin="${CARGO_TARGET_DIR:-target}/release/atelier"

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    exec "$bin" "$@"
fi

ensure_debs xvfb xauth imagemagick
echo "==> no display: running on a virtual one (Xvfb); screenshots go to $PWD/atelier-screen.png" >&2
export SLINT_BACKEND="${SLINT_BACKEND:-winit-software}"
exec xvfb-run -a -s "-screen 0 1440x900x24" bash -c '
    "$0" "${@}" &
    app=$!
    trap "kill $app 2>/dev/null" INT TERM
    while kill -0 $app 2>/dev/null; do
        sleep 10
        import -window root atelier-screen.png 2>/dev/null || true
    done
    wait $app
' "$bin" "$@"
