#!/usr/bin/env bash
# cli_bench.sh MSAC MODELS_DIR — `msac bench` from the outside: usage errors
# exit 2 with the synopsis; without a GPU it exits 1 saying so; with one it
# benches the tiny model and writes a JSON file with both programs.
set -uo pipefail
msac=$1 models=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

expect() { # expect RC PATTERN ARGS...: run `msac bench ARGS`, check the exit status and output
    local rc=$1 pat=$2
    shift 2
    "$msac" bench "$@" >"$tmp/out" 2>&1
    local got=$?
    [ "$got" -eq "$rc" ] || { cat "$tmp/out"; fail "msac bench $* exited $got, expected $rc"; }
    grep -q -- "$pat" "$tmp/out" || { cat "$tmp/out"; fail "msac bench $*: no '$pat' in the output"; }
}

expect 0 "roofline % = 100" --help
expect 0 "zero-caches leaves them" --help
expect 2 "unexpected argument 'y.msac'" x.msac --zero-caches y.msac
expect 2 "no PLAN or MODEL.yaml given"
expect 2 "bad value '0' for --iters" x.msac --iters 0
expect 2 "bad value 'verify' for --program" x.msac --program verify
expect 2 "bad value 'sm_70' for --target" x.yaml --target sm_70
expect 2 "bad value '-5' for --peak-gbs" x.msac --peak-gbs -5
expect 2 "--seq needs a value" x.msac --seq
expect 2 "unknown option '--bogus'" x.msac --bogus
expect 2 "unexpected argument 'y.msac'" x.msac y.msac
expect 2 "--target applies to a MODEL.yaml" x.msac --target sm_80
expect 2 "--tuning and --no-tuning apply to a MODEL.yaml" x.msac --no-tuning
expect 2 "--tuning needs a value" x.yaml --tuning
expect 0 "tuning cache's entries for this GPU" --help
expect 1 "cannot open plan /nonexistent.msac" /nonexistent.msac
expect 1 "cannot open" /nonexistent.yaml

"$msac" bench "$models/tiny-mamba2.yaml" --batch 2 --seq 40 --decode-batch 3 --warmup 1 --iters 3 \
    --json "$tmp/b.json" >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q "msac bench: no GPU" "$tmp/out"; then
    echo "no GPU: $(cat "$tmp/out")"
    exit 0
fi
[ "$rc" -eq 0 ] || { cat "$tmp/out"; fail "msac bench on the tiny model exited $rc"; }
cat "$tmp/out"
for pat in '^device ' '^prefill: batch 2, seq 40' '^decode: batch 3, seq 1' 'tokens/s' 'by kernel'; do
    grep -q "$pat" "$tmp/out" || fail "no '$pat' in the report"
done
for key in '"device"' '"prefill"' '"decode"' '"total_ms"' '"launches"' '"flops"'; do
    grep -q "$key" "$tmp/b.json" || fail "no $key in the JSON"
done
echo "ok"
