#!/usr/bin/env bash
# cli_errors.sh MSAC MODELS_DIR — the msac CLI on bad input and failed
# writes, from the outside: exact messages and exit statuses.
#  - `msac compile` of a bad model prints FILE:LINE:COL: error: ..., the
#    source line and a caret, exits 1 and writes no plan;
#  - `msac info` of a truncated, bit-flipped, empty or non-plan file exits 1
#    with the reader's message;
#  - `msac run` with a prompt token outside the vocabulary exits 1, with a
#    malformed prompt, -n or --seed 2 (checked before any device is opened);
#  - a `msac compile` whose write fails part way (file size limit) or whose
#    directory does not exist exits 1 with the reason and leaves the
#    existing plan byte for byte, with no temporary file behind; the same
#    for `msac run --logits`, and --emit-ptx leaves no temporary files.
set -uo pipefail
msac=$(realpath "$1") models=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# expect RC ARGS...: runs `msac ARGS`, output (stdout and stderr) in ./out
expect() {
    local rc=$1
    shift
    "$msac" "$@" >out 2>&1
    local got=$?
    [ "$got" -eq "$rc" ] || { cat out; fail "msac $* exited $got, expected $rc"; }
}
# line N TEXT: line N of ./out is exactly TEXT
line() {
    local got
    got=$(sed -n "$1p" out)
    [ "$got" = "$2" ] || { cat out; fail "line $1 is '$got', expected '$2'"; }
}

# ---- compile: positioned errors with the source line and a caret ----
printf 'name: bad\nvocab_size: 32\nd_model: 64\nlayers:\n  - kind: mamba2\n    headdim: 48\n' >bad.yaml
expect 1 compile bad.yaml -o bad.msac -q
line 1 "bad.yaml:6:14: error: layer 0: expand * d_model = 128 is not a multiple of headdim (48)"
line 2 "      headdim: 48"
line 3 "               ^"
[ ! -e bad.msac ] || fail "a plan was written for a bad model"
ls bad.msac.tmp.* >/dev/null 2>&1 && fail "a temporary file was left behind"

printf 'name: bad\nvocab_size: 32\nd_model: 64\nlayers:\n  - kind: mamba2\n    d_stat: 16\n' >typo.yaml
expect 1 compile typo.yaml -o typo.msac
line 1 "typo.yaml:6:5: error: unknown key 'd_stat' in layers[0] (mamba2) (did you mean 'd_state'?)"
line 3 "      ^"

printf 'name: bad\nvocab_size: 32\nd_model: 64\nlayers:\n  - kind: transformer\n' >kind.yaml
expect 1 compile kind.yaml -o kind.msac
line 1 "kind.yaml:5:11: error: unknown layer kind 'transformer' (known: mamba2, mamba1, mla, sparse_mla, hybrid, attention, swiglu, moe)"

printf 'name: bad\nvocab_size: 32\nd_model: 64\nlayers: [{kind: mamba2}\n' >syntax.yaml
expect 1 compile syntax.yaml -o syntax.msac
line 1 "syntax.yaml:5:1: error: YAML: did not find expected ',' or ']' while parsing a flow sequence"

expect 1 compile missing.yaml -o missing.msac
line 1 "msac: cannot open missing.yaml: No such file or directory"

# ---- info: damaged plans ----
expect 0 compile "$models/tiny-mamba2.yaml" -o tiny.msac -q
size=$(stat -c %s tiny.msac)
head -c 1000 tiny.msac >trunc.msac
expect 1 info trunc.msac
line 1 "msac: trunc.msac: plan: truncated: header says $((size - 96)) payload bytes, file has 904"
cp tiny.msac flip.msac
printf '\x5a' | dd of=flip.msac bs=1 seek=5000 conv=notrunc status=none
cmp -s tiny.msac flip.msac && fail "the byte at 5000 did not change"
expect 1 info flip.msac
line 1 "msac: flip.msac: plan: checksum mismatch (file corrupt)"
: >empty.msac
expect 1 info empty.msac
line 1 "msac: empty.msac: plan: truncated: file has 0 bytes, a plan header alone is 96"
expect 1 info bad.yaml
line 1 "msac: bad.yaml: plan: not an msac plan file (bad magic)"
expect 0 info tiny.msac

# ---- compile: -j takes a thread count ----
expect 2 compile "$models/tiny-mamba2.yaml" -o j.msac -j 0
line 1 "msac compile: -j must be a thread count from 1 to 256, got '0'"
[ -e j.msac ] && fail "-j 0 wrote a plan"
# ---- run: prompt tokens are checked against the plan's vocabulary ----
expect 1 run tiny.msac --prompt 1,256 -n 1
line 1 "msac run: prompt token 256 is outside the vocabulary (size 256)"
expect 2 run tiny.msac --prompt 1,-2 -n 1
line 1 "msac run: --prompt must be comma-separated token ids, got '1,-2'"
expect 2 run tiny.msac --prompt 1,,2 -n 1
line 1 "msac run: --prompt must be comma-separated token ids, got '1,,2'"
expect 2 run tiny.msac --prompt 1 -n 5x
line 1 "msac run: -n must be a whole number in 1..16777216, got '5x'"
expect 2 run tiny.msac --prompt 1 -n 1 --seed abc
line 1 "msac run: --seed must be a whole number >= 0, got 'abc'"
expect 1 run trunc.msac --prompt 1 -n 1 --device cpu
line 1 "msac: trunc.msac: plan: truncated: header says $((size - 96)) payload bytes, file has 904"

# ---- nothing half-written ----
cp tiny.msac before.msac
# The write of a different plan (sm_80) stops at 16 KiB: a full disk or a
# killed run. SIGXFSZ is ignored so that write() fails with EFBIG instead.
(ulimit -f 16 && trap '' XFSZ && exec "$msac" compile "$models/tiny-mamba2.yaml" -o tiny.msac --target sm_80 -q) \
    >out 2>&1
rc=$?
[ "$rc" -eq 1 ] || { cat out; fail "msac compile under a 16 KiB file size limit exited $rc, expected 1"; }
grep -Ex 'msac: plan: cannot write tiny\.msac\.tmp\.[0-9]+: File too large' out >/dev/null ||
    { cat out; fail "no 'cannot write ...: File too large' message"; }
cmp -s tiny.msac before.msac || fail "the existing plan changed after a failed write"
ls tiny.msac.tmp.* >/dev/null 2>&1 && fail "a temporary file was left behind"
expect 0 info tiny.msac

expect 1 compile "$models/tiny-mamba2.yaml" -o no/such/dir/tiny.msac -q
grep -Ex 'msac: plan: cannot create no/such/dir/tiny\.msac\.tmp\.[0-9]+: No such file or directory' out >/dev/null ||
    { cat out; fail "no 'cannot create ...' message"; }

# --logits: the same rules (the CPU reference, so this runs anywhere).
expect 0 run tiny.msac --device cpu --prompt 1,2 -n 2 --logits logits.npy
cp logits.npy logits.before
(ulimit -f 1 && trap '' XFSZ && exec "$msac" run tiny.msac --device cpu --prompt 1,2,3,4,5 -n 8 --logits logits.npy) \
    >out 2>&1
rc=$?
[ "$rc" -eq 1 ] || { cat out; fail "msac run --logits under a 1 KiB file size limit exited $rc, expected 1"; }
grep -Ex 'msac: cannot write logits\.npy\.tmp\.[0-9]+: File too large' out >/dev/null ||
    { cat out; fail "no 'cannot write ...: File too large' message for --logits"; }
cmp -s logits.npy logits.before || fail "the existing logits file changed after a failed write"
ls logits.npy.tmp.* >/dev/null 2>&1 && fail "a temporary logits file was left behind"
expect 1 run tiny.msac --device cpu --prompt 1 -n 1 --logits no/such/dir/l.npy
grep -Ex 'msac: cannot create no/such/dir/l\.npy\.tmp\.[0-9]+: No such file or directory' out >/dev/null ||
    { cat out; fail "no 'cannot create ...' message for --logits"; }

# --emit-ptx DIR: each kernel's PTX is written whole or not at all.
expect 0 compile "$models/tiny-mamba2.yaml" -o tiny2.msac --emit-ptx ptx -q
n=$(ls ptx/*.ptx | wc -l)
[ "$n" -gt 0 ] || fail "--emit-ptx wrote no files"
ls ptx/*.tmp.* >/dev/null 2>&1 && fail "--emit-ptx left a temporary file behind"

echo "ok"
