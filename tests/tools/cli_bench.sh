#!/usr/bin/env bash
# cli_bench.sh MSAC MODELS_DIR FAKE_CUDA_DIR — `msac bench` from the
# outside: usage errors exit 2 with the synopsis; --kernel on the fake
# driver (tests/runtime/fakecuda: launches take a fixed time, compute
# nothing) reports only that kernel's launches, of a given model or of its
# generated Mamba2 layer; without a GPU it exits 1 saying so; with one it
# benches the tiny model and writes a JSON file with both programs.
set -uo pipefail
msac=$1 models=$2 fake=$3
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
expect 2 "shape the generated model of --kernel" x.yaml --kernel gemv --heads 8
expect 2 "must be even" --kernel mamba2_scan --heads 3 --headdim 5
expect 2 "bad value '' for --kernel" x.yaml --kernel ""
expect 0 "benches a generated one-layer Mamba2 model" --help
expect 1 "the model --kernel generates from --heads 4096 --headdim 4096" --kernel mamba2_scan --heads 4096 --headdim 4096
expect 1 "cannot open plan /nonexistent.msac" /nonexistent.msac
expect 1 "cannot open" /nonexistent.yaml

# --kernel on the fake driver: the generated model's shape in its name, only the matching launches
LD_LIBRARY_PATH=$fake "$msac" bench --kernel mamba2_scan --heads 32 --headdim 64 --d-state 64 --seq 64 --warmup 0 \
    --iters 1 >"$tmp/k" 2>&1 || { cat "$tmp/k"; fail "bench --kernel on the fake driver"; }
grep -q '^plan kernel-mamba2-h32-p64-n64, ' "$tmp/k" || { cat "$tmp/k"; fail "--kernel: generated model"; }
grep -qE '^prefill: .*: 1 of [0-9]+ launches are mamba2_scan\*' "$tmp/k" || { cat "$tmp/k"; fail "--kernel: prefill line"; }
grep -qE '^decode: .*: 0 of [0-9]+ launches are mamba2_scan\*' "$tmp/k" || { cat "$tmp/k"; fail "--kernel: decode line"; }
[ "$(grep -cE '^ +[0-9]+  mamba2_scan_tc_h32_p64_n64' "$tmp/k")" -eq 1 ] || { cat "$tmp/k"; fail "--kernel: the scan's row"; }
grep -qE '^ +[0-9]+  (gemv|gemm|embed)' "$tmp/k" && { cat "$tmp/k"; fail "--kernel: other kernels listed"; }
LD_LIBRARY_PATH=$fake "$msac" bench "$models/tiny-mamba2.yaml" --kernel gemv --seq 16 --warmup 0 --iters 1 \
    >"$tmp/k" 2>&1 || { cat "$tmp/k"; fail "bench MODEL --kernel gemv"; }
grep -qE '^ +sum  gemv ' "$tmp/k" || { cat "$tmp/k"; fail "--kernel gemv: the sum row"; }
LD_LIBRARY_PATH=$fake "$msac" bench "$models/tiny-mamba2.yaml" --kernel nosuch --seq 16 --warmup 0 --iters 1 \
    >"$tmp/k" 2>&1 && fail "--kernel nosuch succeeded"
grep -q 'no launch of a kernel named nosuch\* in the timed programs' "$tmp/k" || { cat "$tmp/k"; fail "--kernel nosuch"; }

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
