# Sourced by the project's scripts: installs, on first use, the tools the tests and benchmarks
# need, into .tools/ inside the checkout (never system-wide, never outside the registries).
set -euo pipefail
SPOTFIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${SPOTFIT_TOOLS:-$SPOTFIT_ROOT/.tools}"
mkdir -p "$TOOLS"

# The workspace's one feature set for tests and test scripts: every build a script makes uses it,
# so cargo reuses what `cargo test --workspace` built instead of rebuilding the AWS SDK crates
# for another feature set. `spotfit-cli/aws` gives the CLI `submit` and `monitor --upload s3://`.
export SPOTFIT_FEATURES="spotfit-cli/aws"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ensure_py PKG[==VER]...: a project venv at .tools/venv with these packages.
ensure_py() {
  if [ ! -x "$TOOLS/venv/bin/python" ]; then
    log "creating Python venv in $TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --upgrade pip >/dev/null
  fi
  local missing=()
  for spec in "$@"; do
    local name="${spec%%[=<>\[]*}"
    local have
    # `|| true`: pip show fails for a package not yet installed, and under pipefail and set -e
    # that would end the script instead of marking the package missing.
    have=$("$TOOLS/venv/bin/pip" show "$name" 2>/dev/null | awk '/^Version:/{print $2}' || true)
    # A pinned spec (NAME==VER) must find exactly that version: an earlier script's install of
    # another version does not count (a clean clone would otherwise test with whichever came first).
    if [ -z "$have" ] || { [[ "$spec" == *==* ]] && [[ "$spec" != *"*"* ]] && [ "$have" != "${spec##*==}" ]; }; then
      missing+=("$spec")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "pip install ${missing[*]}"
    "$TOOLS/venv/bin/pip" install -q "${missing[@]}"
  fi
  export PATH="$TOOLS/venv/bin:$PATH"
}

# ensure_node22: Node.js 22 from the npm registry (the machine has 20; some tools need 22).
ensure_node22() {
  if [ ! -x "$TOOLS/node22/node_modules/node/bin/node" ]; then
    log "installing node@22 into $TOOLS/node22"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/node22" node@22 >/dev/null
  fi
  export PATH="$TOOLS/node22/node_modules/node/bin:$PATH"
}

# ensure_npm DIR: npm ci (or install) in DIR when its node_modules is missing or stale.
ensure_npm() {
  local dir="$1"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package.json" -nt "$dir/node_modules" ]; then
    log "npm install in $dir"
    (cd "$dir" && if [ -f package-lock.json ]; then npm ci --silent --no-audit --no-fund; else npm install --silent --no-audit --no-fund; fi)
    touch "$dir/node_modules"
  fi
}

# free_port: an unused TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ensure_apt PKG...: Debian packages the tests need (podman, docker-registry …), installed only
# when missing (the test machines run as root; elsewhere it says what to install).
ensure_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages (install them as root): ${missing[*]}" >&2
    return 1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}
