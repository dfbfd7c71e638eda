# System packages the desktop app needs, installed when missing (Debian and
# Ubuntu; as root or with sudo). Sourced by desktop-slint/run.sh (the
# README's main job) and tests/run.sh.
#
#   build: pkg-config, fontconfig headers
#   window: X11/xkb libraries, a font, Mesa (GL for the FemtoVG renderer)
#   tests: Xvfb, xauth, xdotool, ImageMagick (real-window tests, screenshots),
#          python3 (its csv module reads the exported cost CSV)

ATELIER_BUILD_DEBS="pkg-config libfontconfig-dev"
ATELIER_WINDOW_DEBS="libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxi6 libxrandr2 fonts-dejavu-core libgl1 libgl1-mesa-dri libegl1 libegl-mesa0 libglx-mesa0"
ATELIER_TEST_DEBS="xvfb xauth xdotool imagemagick python3"

# ensure_debs PKG... : installs the packages dpkg does not list as installed.
ensure_debs() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "warning: missing system packages (no apt-get to install them): ${missing[*]}" >&2
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "==> installing ${missing[*]}" >&2
    $sudo apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
