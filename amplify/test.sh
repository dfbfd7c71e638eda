#!/usr/bin/env bash
# amplify/'s tests, as tests/run.sh runs them: the npm packages of
# package-lock.json (`npm ci`, download cache in ~/.cache/atelier/npm),
# then `npm test` (tsc type-check, offline synthesis, assertions on the
# templates). Nothing contacts AWS.
#
# The installed tree (1.2 GB, ~2 minutes to unpack on two cores) is kept
# outside the clone in ~/.cache/atelier/amplify-node-modules/<lock hash>
# and linked in as node_modules, so a clean clone with an unchanged lock
# file starts at once; a changed lock file installs anew and the older
# tree is removed.
set -euo pipefail
cd "$(dirname "$0")"

cache="${ATELIER_CACHE:-$HOME/.cache/atelier}"
key="$(sha256sum package-lock.json | cut -c1-16)"
trees="$cache/amplify-node-modules"
tree="$trees/$key"

mkdir -p "$trees"
exec 9>"$trees/.lock"
flock 9 # one install at a time (several clones may share the cache)
if [[ ! -f "$tree/installed" ]]; then
    echo "amplify: installing npm packages from package-lock.json into $tree" >&2
    rm -rf "$tree" "$tree.partial"
    mkdir -p "$tree.partial"
    cp package.json package-lock.json "$tree.partial/"
    (cd "$tree.partial" && npm ci --cache "$cache/npm" --prefer-offline --no-audit --no-fund)
    touch "$tree.partial/installed"
    mv "$tree.partial" "$tree"
    find "$trees" -mindepth 1 -maxdepth 1 ! -name "$key" ! -name .lock -exec rm -rf {} +
fi

# A node_modules of an earlier `npm ci` here is replaced by the link.
if [[ -d node_modules && ! -L node_modules ]]; then rm -rf node_modules; fi
ln -sfn "$tree/node_modules" node_modules
flock -u 9

npm test
