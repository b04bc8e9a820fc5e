#!/usr/bin/env bash
# cli_tune.sh MSAC MODELS_DIR FAKE_CUDA_DIR — msac tune and the tuning cache
# from the outside, on the fake driver (tests/runtime/fakecuda: every launch
# "takes" a fixed time and computes nothing, so every candidate ties with the
# default and the outputs agree): the progress lines, the cache it writes,
# --show, msac compile reading the cache, and the errors.
set -uo pipefail
msac=$(realpath "$1") models=$(realpath "$2") fake=$(realpath "$3")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
export MSAC_TUNING_CACHE=$tmp/cache/tuning.json

LD_LIBRARY_PATH=$fake "$msac" tune "$models/tiny-mamba2.yaml" --seq 64 --warmup 0 --iters 1 >out 2>err ||
    { cat out err; fail "msac tune on the fake driver failed"; }
grep -q '^msac tune: .*tiny-mamba2.yaml on .*; 15 kernels to tune; prefill 1x64, decode batch 1 at position 1024' out ||
    { cat out; fail "no header line"; }
[ "$(grep -cE '^(prefill|decode) ' out)" -eq 15 ] || { cat out; fail "not one line per kernel"; }
# 24 candidates: the default's own schedule is "same code" (not run twice), 23 others + the default timed
grep -qE '^prefill +gemm_n328_k64_bf16_128x128x64_w2x4_s3 +2 nodes +24 candidates: +24 timed, +1 same code, +0 rejected' out ||
    { cat out; fail "the in_proj gemm line"; }
grep -q 'rejected: gemv: invalid schedule wn=1 wk=8 for K=64' err || { cat err; fail "no rejection message"; }
[ -f cache/tuning.json ] || fail "no cache written (the directory is made)"
grep -q '"msac_tuning_cache": 1' cache/tuning.json || fail "cache format"
[ "$(grep -c '"key":' cache/tuning.json)" -eq 15 ] || fail "15 entries expected"

# several decode batch sizes in one run: one entry per size, and msac
# compile gives the plan a decode program per size (decode, decode@8)
MSAC_TUNING_CACHE=$tmp/multi.json LD_LIBRARY_PATH=$fake "$msac" tune "$models/tiny-mamba2.yaml" --program decode \
    --decode-batch 1,64 --ctx 16 --warmup 0 --iters 1 >out 2>err || { cat out err; fail "--decode-batch 1,64"; }
grep -q 'decode batch 1,64 at position 16' out || { head -3 out; fail "header with two decode batches"; }
grep -qx 'decode at batch 64:' out || { cat out; fail "no batch-64 section"; }
[ "$(grep -c '"program": "decode"' multi.json)" -eq 14 ] || fail "7 decode kernels x 2 batch sizes expected"
"$msac" compile "$models/tiny-mamba2.yaml" -o multi.msac --tuning multi.json 2>err || { cat err; fail "compile multi"; }
grep -q '^msac: decode@8: schedules tuned at batch 64' err || { cat err; fail "no decode@8 program"; }
"$msac" info multi.msac >info3 || fail "info multi"
grep -q '^program decode@8 ' info3 || { grep '^program' info3; fail "msac info: decode@8"; }

# a second run replaces entries instead of adding them
LD_LIBRARY_PATH=$fake "$msac" tune "$models/tiny-mamba2.yaml" --seq 64 --warmup 0 --iters 1 --program decode \
    --kernel gemv >out 2>err || { cat out err; fail "second run"; }
[ "$(grep -cE '^decode +gemv' out)" -eq 5 ] || { cat out; fail "--program decode --kernel gemv: 5 gemv kernels"; }
[ "$(grep -c '"key":' cache/tuning.json)" -eq 15 ] || fail "the second run added entries"

"$msac" tune --show >out || fail "--show"
grep -q "^tuning cache $tmp/cache/tuning.json" out || { cat out; fail "--show header"; }
[ "$(grep -c '/13000 *sm_90a' out)" -eq 15 ] || { cat out; fail "--show rows"; }

# compile reads it (the fake GPU's entries are the cache's only GPU)
"$msac" compile "$models/tiny-mamba2.yaml" -o tuned.msac 2>err || { cat err; fail "compile with the cache"; }
grep -q "tuning cache $tmp/cache/tuning.json: using its entries for" err || { cat err; fail "compile's cache line"; }
grep -qE '^msac: [1-9][0-9]* nodes took tuned schedules' err || { cat err; fail "compile's tuned count"; }
"$msac" compile "$models/tiny-mamba2.yaml" -o plain.msac --no-tuning -q || fail "--no-tuning"
"$msac" info tuned.msac >info1 && "$msac" info plain.msac >info2 || fail "msac info"
grep -qE '^  schedules from the tuning cache for Fake GPU 0/[0-9]+/[0-9]+ \([1-9][0-9]* nodes\)' info1 ||
    { head -3 info1; fail "msac info: tuned_for"; }
grep -qx '  default schedules (no tuning cache entry was used)' info2 || { head -3 info2; fail "msac info: default"; }
# msac bench says whose schedules a plan has (msac_plan_tuned_for)
LD_LIBRARY_PATH=$fake "$msac" bench tuned.msac --seq 16 --warmup 0 --iters 1 >b1 2>&1 || { cat b1; fail "bench tuned"; }
grep -qE '^schedules: tuned for this GPU \([1-9][0-9]* nodes from the tuning cache\)$' b1 || { head -5 b1; fail "bench: tuned line"; }
LD_LIBRARY_PATH=$fake "$msac" bench plain.msac --seq 16 --warmup 0 --iters 1 >b2 2>&1 || { cat b2; fail "bench plain"; }
grep -qx 'schedules: default heuristics (no tuning cache entry was used)' b2 || { head -5 b2; fail "bench: default line"; }
# msac bench MODEL.yaml compiles with the cache as msac compile does; --no-tuning without it
LD_LIBRARY_PATH=$fake "$msac" bench "$models/tiny-mamba2.yaml" --seq 16 --warmup 0 --iters 1 >b3 2>&1 ||
    { cat b3; fail "bench yaml tuned"; }
grep -qE '^schedules: tuned for this GPU \([1-9][0-9]* nodes from the tuning cache\)$' b3 || { head -5 b3; fail "bench yaml: tuned line"; }
LD_LIBRARY_PATH=$fake "$msac" bench "$models/tiny-mamba2.yaml" --seq 16 --warmup 0 --iters 1 --no-tuning >b4 2>&1 ||
    { cat b4; fail "bench yaml --no-tuning"; }
grep -qx 'schedules: default heuristics (no tuning cache entry was used)' b4 || { head -5 b4; fail "bench yaml: default line"; }
# every candidate tied, so the tuned schedules are the defaults: same kernels
grep -A20 '^kernels' info1 >k1
grep -A20 '^kernels' info2 >k2
cmp -s k1 k2 || { diff k1 k2; fail "tied candidates changed the kernels"; }

# a plan as input: recompiled from the graph it carries, the same kernel keys
"$msac" compile "$models/tiny-mamba2.yaml" -o tiny.msac --no-tuning -q || fail "compile tiny"
MSAC_TUNING_CACHE=$tmp/fromplan.json LD_LIBRARY_PATH=$fake "$msac" tune tiny.msac --seq 64 --warmup 0 --iters 1 \
    >out 2>err || { cat out err; fail "msac tune PLAN"; }
grep -o '"key": "[0-9a-f]*"' cache/tuning.json | sort >keys1
grep -o '"key": "[0-9a-f]*"' fromplan.json | sort >keys2
cmp -s keys1 keys2 || { diff keys1 keys2; fail "a plan's graph gives other kernel keys than its YAML"; }

# errors
printf '{"msac_tuning_cache": 2, "entries": []}' >bad.json
"$msac" compile "$models/tiny-mamba2.yaml" -o x.msac --tuning bad.json -q 2>err && fail "a bad cache was accepted"
grep -qx 'msac compile: bad.json: not an msac tuning cache (version 2)' err || { cat err; fail "bad cache message"; }
"$msac" bench "$models/tiny-mamba2.yaml" --tuning bad.json >err 2>&1 && fail "bench: a bad cache was accepted"
grep -qx 'msac bench: bad.json: not an msac tuning cache (version 2)' err || { cat err; fail "bench: bad cache message"; }
LD_LIBRARY_PATH=/nonexistent "$msac" tune "$models/tiny-mamba2.yaml" 2>err >/dev/null
rc=$?
[ "$rc" -eq 1 ] || fail "tune without a driver exited $rc"
grep -q '^msac tune: no GPU: ' err || { cat err; fail "no-GPU message"; }
"$msac" tune 2>err >/dev/null
[ $? -eq 2 ] && grep -q '^msac tune: no PLAN or MODEL.yaml given' err || { cat err; fail "no input"; }
"$msac" tune x.yaml --tol abc 2>err >/dev/null
[ $? -eq 2 ] && grep -qx "msac tune: bad value 'abc' for --tol" err || { cat err; fail "bad --tol"; }
echo ok
