#!/bin/sh
# Runs every spec under each interpreter given, then under the ASan+UBSan build (Lua 5.4),
# and prints the total as its last line: "N passed, N failed". Exits non-zero on a failure.
# Called by `make test`; assumes the builds exist.
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
run() { # run <label> <lua> <variant> [env...]
  label=$1 lua=$2 variant=$3
  shift 3
  out=$(mktemp)
  env "$@" "$lua" /usr/bin/busted --lpath="lua/?.lua;lua/?/init.lua;spec/?.lua" \
    --cpath="build/$lua/$variant/?.so" -o utfTerminal spec >"$out" 2>&1
  status=$?
  summary=$(grep -E '[0-9]+ success' "$out" | tail -n 1)
  ok=$(echo "$summary" | sed -n 's/^\([0-9]*\) success.*/\1/p')
  bad=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failure.* \([0-9]*\) error.*/\1 \2/p')
  nfail=0
  for n in $bad; do nfail=$((nfail + n)); done
  if [ -z "$ok" ]; then ok=0; nfail=$((nfail + 1)); fi
  if [ "$status" -ne 0 ] && [ "$nfail" -eq 0 ]; then nfail=1; fi
  if [ "$nfail" -ne 0 ]; then cat "$out"; fi
  echo "$label: $ok passed, $nfail failed"
  passed=$((passed + ok))
  failed=$((failed + nfail))
  rm -f "$out"
}
for lua in "$@"; do
  run "$lua" "$lua" release
done
asan=$(cc -print-file-name=libasan.so)
run "lua5.4 asan+ubsan" lua5.4 asan LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
