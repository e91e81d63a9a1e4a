# Sourced by the container tests (after scripts/lib/tools.sh): podman without Docker's engine,
# an image made offline, and a registry on loopback that refuses anonymous pulls (htpasswd), as
# a stand-in for ECR's token login. Measured facts behind each choice: /work/shared/FACTS.md.
#
#   containers_init DIR     podman set up under DIR (CONTAINERS_CONF, registries.conf, auth
#                           file, all exported); `podman` as the runtime the agent calls
#   make_burn_image DIR REF a busybox-static root filesystem with the static `burn` workload
#                           (scripts/tests/fixtures/burn.c, built static) → `podman import` REF
#   registry_start DIR [USER PASSWORD_FILE]
#                           docker-registry on loopback ($REGISTRY_PORT, else a free port) with
#                           htpasswd auth (a random password unless given); sets REGISTRY
#                           (host:port), REGISTRY_USER, REGISTRY_PASSWORD_FILE
#   registry_login          `podman login --password-stdin` into $REGISTRY (the auth file)
#   registry_push REF NAME  pushes REF as $REGISTRY/NAME (logged in)
#   containers_cleanup      removes the images in $CLEANUP_IMAGES and their containers, stops
#                           the registry
#
# The `docker` on this machine's PATH is a Docker client with no daemon
# (/usr/local/bin/docker), and it shadows podman-docker's `docker` shim: the tests pass
# `--container-runtime podman` to the agent rather than rely on PATH order.

CONTAINER_RUNTIME=podman

containers_init() {
  local dir="$1"
  ensure_apt podman runc busybox-static docker-registry apache2-utils
  mkdir -p "$dir"
  # crun (podman's default) refuses this host's hybrid cgroups: runc. podman's default ulimits
  # fail here (setrlimit RLIMIT_NOFILE: Operation not permitted): none.
  cat > "$dir/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF="$dir/containers.conf"
  # The registry speaks plain HTTP on loopback; the auth file is this test's alone.
  export CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
  : > "$CONTAINERS_REGISTRIES_CONF"
  export REGISTRY_AUTH_FILE="$dir/auth.json"
  echo '{}' > "$REGISTRY_AUTH_FILE"
  CONTAINERS_DIR="$dir"
}

# The workload, static (the image holds nothing else), built once per checkout: with the
# system's C compiler where it links statically (glibc's libc.a: instant), else with zig's
# (static musl; its first build of musl takes ~2 min here, later ones are cached by zig).
build_burn() {
  local out="$SPOTFIT_ROOT/target/burn/burn" src="$SPOTFIT_ROOT/scripts/tests/fixtures/burn.c"
  if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
    mkdir -p "$(dirname "$out")"
    if ! cc -O2 -static -s "$src" -o "$out.tmp" 2>/dev/null; then
      ensure_py ziglang
      log "building the burn workload (zig cc, static musl)"
      "$TOOLS/venv/bin/python" -m ziglang cc -target x86_64-linux-musl -O2 -static -s "$src" -o "$out.tmp"
    fi
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

make_burn_image() {
  local dir="$1" ref="$2" burn
  burn="$(build_burn)"
  rm -rf "$dir/rootfs"
  mkdir -p "$dir/rootfs/bin"
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  for a in sh cat sleep; do ln -sf busybox "$dir/rootfs/bin/$a"; done
  cp "$burn" "$dir/rootfs/bin/burn"
  tar -C "$dir/rootfs" -c . | podman import - "$ref" > "$dir/import.log" 2>&1
}

registry_start() {
  local dir="$1/registry" port
  mkdir -p "$dir/data"
  port="${REGISTRY_PORT:-$(free_port)}"
  REGISTRY="127.0.0.1:$port"
  REGISTRY_USER="${2:-spotfit}"
  if [ -n "${3:-}" ]; then
    REGISTRY_PASSWORD_FILE="$3"
  else
    REGISTRY_PASSWORD_FILE="$dir/password"
    python3 -c 'import secrets; print(secrets.token_urlsafe(18))' > "$REGISTRY_PASSWORD_FILE"
  fi
  # bcrypt (the registry accepts no other hash); the password from stdin, not argv.
  htpasswd -Bin "$REGISTRY_USER" < "$REGISTRY_PASSWORD_FILE" > "$dir/htpasswd" 2>/dev/null
  cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $REGISTRY
auth:
  htpasswd:
    realm: spotfit-test
    path: $dir/htpasswd
EOF
  cat >> "$CONTAINERS_REGISTRIES_CONF" <<EOF
[[registry]]
location = "$REGISTRY"
insecure = true
EOF
  # The registry reads REGISTRY_* variables as configuration: podman's REGISTRY_AUTH_FILE
  # would become its `auth.file`.
  env -u REGISTRY_AUTH_FILE docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 50); do
    # 401 from /v2/ means it is up and asks for credentials.
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/")" = 401 ] && return 0
    sleep 0.1
  done
  echo "the registry did not start; its log:" >&2; cat "$dir/registry.log" >&2; return 1
}

registry_login() {
  podman login --username "$REGISTRY_USER" --password-stdin "$REGISTRY" < "$REGISTRY_PASSWORD_FILE" >/dev/null
}

registry_push() {
  podman push -q "$1" "$REGISTRY/$2" >/dev/null
}

containers_cleanup() {
  local ref ids
  for ref in ${CLEANUP_IMAGES:-}; do
    ids="$(podman ps -aq --filter "ancestor=$ref" 2>/dev/null || true)"
    if [ -n "$ids" ]; then podman rm -f $ids >/dev/null 2>&1 || true; fi
    podman rmi -f "$ref" >/dev/null 2>&1 || true
  done
  if [ -n "${REGISTRY_PID:-}" ]; then kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  return 0
}
