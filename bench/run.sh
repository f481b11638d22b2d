#!/usr/bin/env bash
# bench/run.sh: `make bench`. Installs missing peers (apt-get, only when missing), builds
# the Go peer once into a temporary directory, then runs bench/run.lua, which runs every
# peer on every workload and writes bench/RESULTS.md.
#
#   bash bench/run.sh                                  # full run, 5 repetitions
#   BENCH_REPS=1 BENCH_SCALE=0.01 bash bench/run.sh    # smoke run
#
# conc itself is expected at build/lua5.4/release/conc/core.so and
# build/luajit/release/conc/core.so (module conc.core) with lua/conc/init.lua; when a
# build is missing its columns read "n/a (not built: ...)". More knobs: see bench/run.lua.
#
# The network rows (C1 chat, E1 echo) also build bench/chat_load (the load generator) and
# bench/chatgo (the Go chat server and echo), standard library only; C1 runs 1,000
# clients against each server, so the open files limit is raised to 4096 when lower.
set -u
cd "$(dirname "$0")/.."

apt_updated=
need() {  # need PACKAGE TEST-COMMAND...: apt-get install PACKAGE unless the test passes
  local pkg=$1; shift
  if "$@" >/dev/null 2>&1; then return 0; fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "bench: $pkg is missing and cannot be installed here (needs root and apt-get)" >&2
    return 1
  fi
  echo "bench: installing $pkg" >&2
  if [ -z "$apt_updated" ]; then apt-get update -qq >&2 || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2 ||
    echo "bench: could not install $pkg; its peer will be n/a" >&2
}

need lua5.4 command -v lua5.4 || { echo "bench: lua5.4 is required to run the harness" >&2; exit 1; }
need luajit command -v luajit
need golang-go command -v go
need golang-golang-x-sync-dev test -f /usr/share/gocode/src/golang.org/x/sync/go.mod  # Go's M1 M2 G1
need golang-golang-x-time-dev test -f /usr/share/gocode/src/golang.org/x/time/go.mod  # Go's R1 R2 R3 K1
need tarantool command -v tarantool
need lua-system lua5.4 -e 'assert(require("system").monotime)'   # clock for the pure-Lua peer

tmp=$(mktemp -d "${TMPDIR:-/tmp}/concbench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

go_bin=
if command -v go >/dev/null 2>&1; then
  # Without HOME the go command has no default cache; give it a temporary one.
  if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ]; then export GOCACHE="$tmp/gocache"; fi
  # golang.org/x/sync (M1, M2, G1) and golang.org/x/time (R1, R2, R3, K1) are Debian's
  # copies: a go.mod of our own replaces each module by its directory, and tags xsync and
  # xtime build bench/go/xsync.go and bench/go/xtime.go. A module that is missing, or a
  # build with them that fails, leaves its workloads printing NA in the plain build.
  tags= reqs=
  for m in sync:xsync time:xtime; do
    dir=/usr/share/gocode/src/golang.org/x/${m%%:*}
    if [ -f "$dir/go.mod" ]; then
      tags="$tags,${m#*:}"
      reqs="$reqs$(printf '\nrequire golang.org/x/%s v0.0.0\n\nreplace golang.org/x/%s => %s\n' \
                          "${m%%:*}" "${m%%:*}" "$dir")"
    fi
  done
  if [ -n "$tags" ]; then
    { cat bench/go/go.mod; printf '%s\n' "$reqs"; } >"$tmp/go.mod"
    if (cd bench/go && GOFLAGS=-mod=mod GOPROXY=off go build -modfile="$tmp/go.mod" -tags="${tags#,}" \
          -o "$tmp/concbench" .) >&2; then
      go_bin="$tmp/concbench"
    else
      echo "bench: go build with golang.org/x/{sync,time} failed; building without them" >&2
    fi
  fi
  if [ -z "$go_bin" ]; then
    if (cd bench/go && GOFLAGS=-mod=mod GOPROXY=off go build -o "$tmp/concbench" .) >&2; then
      go_bin="$tmp/concbench"
    else
      echo "bench: go build failed; the Go peer will be n/a" >&2
    fi
  fi
fi

chat_load_bin= chatgo_bin=
if command -v go >/dev/null 2>&1; then
  if (cd bench/chat_load && GOFLAGS=-mod=mod GOPROXY=off go build -o "$tmp/chat_load" .) >&2; then
    chat_load_bin="$tmp/chat_load"
  else
    echo "bench: go build of bench/chat_load failed; the chat rows (C1) will be n/a" >&2
  fi
  if (cd bench/chatgo && GOFLAGS=-mod=mod GOPROXY=off go build -o "$tmp/chatgo" .) >&2; then
    chatgo_bin="$tmp/chatgo"
  else
    echo "bench: go build of bench/chatgo failed; Go's C1 and E1 will be n/a" >&2
  fi
fi
# C1: 1,000 client sockets in the load generator and 1,000 in the server (each its own
# process, each under this limit).
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null ||
    echo "bench: the open files limit is $(ulimit -n); C1 needs about 1100" >&2
fi

BENCH_GO_BIN="$go_bin" BENCH_CHAT_LOAD_BIN="$chat_load_bin" BENCH_CHATGO_BIN="$chatgo_bin" \
  lua5.4 bench/run.lua
