#!/usr/bin/env bash
# bench/model.sh NAME [OUT_DIR] — makes a benchmark model with the fixtures' generator
# (random weights, seed 7), then quantizes it with `moe quantize` to each of $TYPES
# (default q8_0 q4_0 q4_K). Prints the paths. Files are big; never commit them.
#   mix-1b  the model of issues 7 and 8: 16 layers, 1,024 wide, 8 experts top-2 of hidden
#           2,816, llama's vocabulary (1.2 B parameters, 2.4 GB f16)
#   wide    Mixtral 8x7B's matrix shapes (4,096 wide, expert hidden 14,336, 32 heads, 8 KV
#           heads) with 2 layers, 4 experts top-2 and 8,000 tokens (1.56 B parameters,
#           3.1 GB f16): products as long as the real model's
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: bench/model.sh mix-1b|wide [OUT_DIR]}
out=${2:-bench/out}
case "$name" in
mix-1b) shape=(--layers 16 --embd 1024 --heads 16 --kv-heads 4 --ff 2816 --experts 8 --topk 2) ;;
wide) shape=(--layers 2 --embd 4096 --heads 32 --kv-heads 8 --ff 14336 --experts 4 --topk 2 --vocab-size 8000) ;;
*) echo "bench/model.sh: unknown model '$name' (mix-1b, wide)" >&2; exit 2 ;;
esac
mkdir -p "$out"
moe=${MOE:-./moe}
f16="$out/$name-f16.gguf"
if [ ! -s "$f16" ]; then
    echo "making $f16 (mkmoe.py, seed 7)..." >&2
    /usr/bin/python3 ../shared/fixtures/mkmoe.py --arch mixtral "${shape[@]}" \
        --vocab-from ../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf --seed 7 --dtype f16 --out "$f16" >&2
fi
for t in ${TYPES:-q8_0 q4_0 q4_K}; do
    q="$out/$name-$t.gguf"
    if [ ! -s "$q" ]; then
        echo "quantizing to $t..." >&2
        "$moe" quantize "$f16" "$q" "$t" >&2
    fi
    echo "$q"
done
