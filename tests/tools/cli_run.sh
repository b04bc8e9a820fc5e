#!/usr/bin/env bash
# cli_run.sh MSAC MODELS_DIR — `msac run` with several prompts of different
# lengths: each sequence's tokens equal those of a run with that prompt
# alone, on the CPU reference, and on a GPU when one is present (there the
# batch runs as one ragged prefill and batched decode steps, and is compared
# with single GPU runs: GPU and CPU greedy tokens may part at a near tie,
# e.g. logits 0.4120 vs 0.4111, which the GPU suite's tolerances cover);
# --logits with several prompts is refused.
set -uo pipefail
msac=$(realpath "$1") models=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

"$msac" compile "$models/tiny-mamba2.yaml" -o tiny.msac -q --no-tuning || fail "compile"
prompts=("1,2,3,4,5" "9" "7,7,7,200,3,4,5,6,8,10,11")
for i in 0 1 2; do
    "$msac" run tiny.msac --device cpu --prompt "${prompts[$i]}" -n 6 >one.$i 2>&1 || { cat one.$i; fail "single run $i"; }
    grep '^tokens:' one.$i | sed "s/^tokens:/tokens $i:/" >>want
done
"$msac" run tiny.msac --device cpu --prompt "${prompts[0]}" --prompt "${prompts[1]}" --prompt "${prompts[2]}" -n 6 \
    >batch 2>&1 || { cat batch; fail "batch run"; }
grep -qx '3 sequences on the CPU reference, one after another' batch || { cat batch; fail "no CPU batch line"; }
grep '^tokens [0-9]*:' batch >got
cmp -s got want || { diff got want; fail "the batch's tokens differ from single runs"; }

if "$msac" run tiny.msac --device gpu --prompt 1 -n 1 >/dev/null 2>&1; then
    for i in 0 1 2; do
        "$msac" run tiny.msac --device gpu --prompt "${prompts[$i]}" -n 6 >gone.$i 2>&1 || { cat gone.$i; fail "GPU run $i"; }
        grep '^tokens:' gone.$i | sed "s/^tokens:/tokens $i:/" >>gwant
    done
    "$msac" run tiny.msac --device gpu --prompt "${prompts[0]}" --prompt "${prompts[1]}" --prompt "${prompts[2]}" \
        -n 6 >gbatch 2>&1 || { cat gbatch; fail "GPU batch run"; }
    grep -qx '3 sequences on the GPU in one batch' gbatch || { cat gbatch; fail "no GPU batch line"; }
    grep '^tokens [0-9]*:' gbatch >ggot
    cmp -s ggot gwant || { diff ggot gwant; fail "the GPU batch's tokens differ from single GPU runs"; }
    echo "GPU batch checked"
fi

"$msac" run tiny.msac --device cpu --prompt 1 --prompt 2 --logits x.npy >out 2>&1
[ $? -eq 2 ] || fail "--logits with two prompts was accepted"
grep -qx 'msac run: --logits takes a single prompt (2 given)' out || { cat out; fail "--logits message"; }
echo ok
