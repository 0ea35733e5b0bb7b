#!/usr/bin/env bash
# bench/mix1b.sh [OUT_DIR] — makes the "mix-1b" benchmark model of issues 7 and 8 (1.2 B
# parameters, Mixtral layout, random weights) with the fixtures' generator, then quantizes
# it with `moe quantize`. Prints the paths. Files are big (2.4 GB f16); never commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
moe=${MOE:-./moe}
f16="$out/mix-1b-f16.gguf"
if [ ! -s "$f16" ]; then
    echo "making $f16 (mkmoe.py, seed 7)..." >&2
    /usr/bin/python3 ../shared/fixtures/mkmoe.py --arch mixtral --layers 16 --embd 1024 --heads 16 --kv-heads 4 \
        --ff 2816 --experts 8 --topk 2 --vocab-from ../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf \
        --seed 7 --dtype f16 --out "$f16" >&2
fi
for t in ${TYPES:-q8_0 q4_0 q4_K}; do
    q="$out/mix-1b-$t.gguf"
    if [ ! -s "$q" ]; then
        echo "quantizing to $t..." >&2
        "$moe" quantize "$f16" "$q" "$t" >&2
    fi
    echo "$q"
done
