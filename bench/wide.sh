#!/usr/bin/env bash
# bench/wide.sh [OUT_DIR] — makes "wide", a benchmark model with Mixtral 8x7B's matrix
# shapes (4,096 embedding, 14,336 expert hidden, 32 heads, 8 KV heads) but 2 layers, 4
# experts and an 8,000-token vocabulary (1.56 B parameters, random weights), then
# quantizes it with `moe quantize`. Its expert down projections have rows of 14,336
# values, where mix-1b's widest rows have 2,816: the shapes of the real model's products.
# Prints the paths. Files are big (3.1 GB f16); never commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
moe=${MOE:-./moe}
f16="$out/wide-f16.gguf"
if [ ! -s "$f16" ]; then
    echo "making $f16 (mkmoe.py, seed 7)..." >&2
    /usr/bin/python3 ../shared/fixtures/mkmoe.py --arch mixtral --layers 2 --embd 4096 --heads 32 --kv-heads 8 \
        --ff 14336 --experts 4 --topk 2 --vocab-from ../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf \
        --vocab-size 8000 --seed 7 --dtype f16 --out "$f16" >&2
fi
for t in ${TYPES:-q8_0 q4_0 q4_K}; do
    q="$out/wide-$t.gguf"
    if [ ! -s "$q" ]; then
        echo "quantizing to $t..." >&2
        "$moe" quantize "$f16" "$q" "$t" >&2
    fi
    echo "$q"
done
