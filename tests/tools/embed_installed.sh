#!/usr/bin/env bash
# embed_installed.sh MESON BUILD_ROOT SOURCE_ROOT PREFIX LIBDIR BINDIR FAKE_CUDA_DIR CC...
#
# msac as a user gets it: `meson install --destdir` into a temporary tree,
# then examples/embed.c compiled with the C compiler and
# `pkg-config --cflags --libs msacrt` alone (the staged msacrt.pc, nothing
# from the source or build tree), and a plan compiled from
# models/tiny-mamba2.yaml by the installed msac (found libmsac through its
# run path). Then embed runs:
#  - on this machine's driver: with a GPU it generates the same tokens as
#    `msac run --device gpu`; without one it exits 1 with "no GPU: ..."
#    (and `msac run --device gpu` agrees that there is none);
#  - on the fake driver (tests/runtime/fakecuda: host memory, kernels do
#    nothing, so every logit is 0 and greedy picks token 0), through the
#    one-call and the ragged prefill paths;
#  - with a missing plan and a bad prompt, failing with readable messages.
set -uo pipefail
unset LD_LIBRARY_PATH # meson's points into the build tree: nothing here may use it
meson=$1 build=$2 src=$3 prefix=$4 libdir=$5 bindir=$6 fake=$7
shift 7
cc=("$@")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

stage=$tmp/stage
"$meson" install -C "$build" --destdir "$stage" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "meson install --destdir"; }
case $libdir in /*) lib=$stage$libdir ;; *) lib=$stage$prefix/$libdir ;; esac
case $bindir in /*) bin=$stage$bindir ;; *) bin=$stage$prefix/$bindir ;; esac
for f in "$lib/pkgconfig/msacrt.pc" "$lib/libmsacrt.so" "$lib/libmsac.so" "$bin/msac"; do
    [ -e "$f" ] || fail "meson install did not install $f"
done
find "$stage" -name runtime.h -path '*/include/msac/*' | grep . >/dev/null || fail "msac/runtime.h not installed"

# pkg-config sees only the staged tree (the sysroot maps its paths into it)
export PKG_CONFIG_LIBDIR=$lib/pkgconfig PKG_CONFIG_PATH= PKG_CONFIG_SYSROOT_DIR=$stage
flags=$(pkg-config --cflags --libs msacrt) || fail "pkg-config --cflags --libs msacrt"
echo "pkg-config: $flags"
case $flags in *"-L$lib"*"-lmsacrt"*) ;; *) fail "pkg-config flags do not point into the staged tree: $flags" ;; esac
# shellcheck disable=SC2086 # the flags are words
"${cc[@]}" -std=c17 -Wall -Wextra -Wpedantic -Werror -o "$tmp/embed" "$src/examples/embed.c" $flags \
    >"$tmp/cc.log" 2>&1 || { cat "$tmp/cc.log"; fail "embed.c does not build against the installed msacrt"; }
export LD_LIBRARY_PATH=$lib
ldd "$tmp/embed" | grep "libmsacrt.so.0 => $lib/" >/dev/null || { ldd "$tmp/embed"; fail "embed does not load the staged libmsacrt"; }

env -u LD_LIBRARY_PATH "$bin/msac" compile "$src/models/tiny-mamba2.yaml" -o "$tmp/tiny.msac" -q >"$tmp/c.log" 2>&1 ||
    { cat "$tmp/c.log"; fail "the installed msac cannot compile tiny-mamba2.yaml"; }
plan=$tmp/tiny.msac

# tokens of line "sequence R: tokens ..." (or "tokens: ..." of msac run) in file $1
tokens_of() { sed -n "s/^$2 *//p" "$1"; }

# this machine's driver
"$tmp/embed" "$plan" --prompt 1,2,3,4 -n 8 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 0 ]; then
    cat "$tmp/out"
    got=$(tokens_of "$tmp/out" "sequence 0: tokens")
    [ "$(echo "$got" | wc -w)" -eq 8 ] || fail "embed generated '$got', not 8 tokens"
    env -u LD_LIBRARY_PATH "$bin/msac" run "$plan" --device gpu --prompt 1,2,3,4 -n 8 >"$tmp/run" 2>&1 ||
        { cat "$tmp/run"; fail "msac run --device gpu"; }
    want=$(tokens_of "$tmp/run" "tokens:")
    [ "$got" = "$want" ] || fail "embed generated '$got', msac run '$want'"
    # several prompts of different lengths: the ragged path, same first sequence
    "$tmp/embed" "$plan" --prompt 1,2,3,4 --prompt 7 --prompt 9,9,9 -n 8 >"$tmp/out3" 2>&1 ||
        { cat "$tmp/out3"; fail "embed with three prompts"; }
    cat "$tmp/out3"
    grep -q "msac_session_prefill_ragged" "$tmp/out3" || fail "three prompts did not use the ragged prefill"
    [ "$(tokens_of "$tmp/out3" "sequence 0: tokens")" = "$got" ] || fail "sequence 0 changed next to other prompts"
    echo "GPU: embed generated $got"
elif [ "$rc" -eq 1 ] && grep -Eq "^no GPU: no (usable )?CUDA (driver|device)" "$tmp/err"; then
    echo "no GPU here: $(cat "$tmp/err")"
    env -u LD_LIBRARY_PATH "$bin/msac" run "$plan" --device gpu -n 1 >"$tmp/run" 2>&1 &&
        fail "embed found no GPU but msac run --device gpu ran"
    grep -q "no .*CUDA" "$tmp/run" || { cat "$tmp/run"; fail "msac run --device gpu failed for another reason"; }
else
    cat "$tmp/out" "$tmp/err"
    fail "embed exited $rc"
fi

# the fake driver: the whole flow, every logit 0 so every token 0
LD_LIBRARY_PATH=$fake:$lib "$tmp/embed" "$plan" --prompt 1,2,3 --prompt 5,6 -n 4 >"$tmp/f" 2>&1 ||
    { cat "$tmp/f"; fail "embed on the fake driver (ragged)"; }
for pat in "on Fake GPU 0 (sm_90" "^session: 2 sequences, prompts up to 3 tokens, context 7" \
    "^sequence 1: prompt 5 6$" "^sequence 0: tokens 0 0 0 0$" "^sequence 1: tokens 0 0 0 0$" \
    "^prefill: 5 tokens .*(msac_session_prefill_ragged)" "^decode: 3 steps of 2 sequences"; do
    grep -q "$pat" "$tmp/f" || { cat "$tmp/f"; fail "fake driver, ragged: no '$pat'"; }
done
LD_LIBRARY_PATH=$fake:$lib "$tmp/embed" "$plan" --prompt 1,2 --prompt 3,4 -n 2 >"$tmp/f2" 2>&1 ||
    { cat "$tmp/f2"; fail "embed on the fake driver (one call)"; }
grep -q "^prefill: 4 tokens .*(msac_session_prefill)" "$tmp/f2" || { cat "$tmp/f2"; fail "equal prompts: not one call"; }

# failures with their messages
"$tmp/embed" "$tmp/none.msac" >"$tmp/e" 2>&1
[ $? -eq 1 ] && grep -q "^embed: msac_plan_load: MSAC_ERR_IO: cannot open plan $tmp/none.msac" "$tmp/e" ||
    { cat "$tmp/e"; fail "missing plan"; }
"$tmp/embed" "$plan" --prompt 1,x >"$tmp/e" 2>&1
[ $? -eq 2 ] && grep -q "^embed: --prompt must be comma-separated token ids, got '1,x'" "$tmp/e" ||
    { cat "$tmp/e"; fail "bad prompt"; }
LD_LIBRARY_PATH=$fake:$lib "$tmp/embed" "$plan" --prompt 1,999 >"$tmp/e" 2>&1
[ $? -eq 1 ] && grep -q "^embed: msac_session_prefill: MSAC_ERR_INVALID_ARGUMENT: prefill: token 999 at \[0, 1\] is outside the vocabulary \[0, 256)" "$tmp/e" ||
    { cat "$tmp/e"; fail "token outside the vocabulary"; }
echo "ok"
