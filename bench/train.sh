#!/usr/bin/env bash
# bench/train.sh — training throughput of `moe train` (issue 10): a ~19 M-parameter
# Mixtral-shaped model (4 layers, d 384, 6 heads / 2 KV heads, 8 experts of width 384,
# top-2, llama-spm vocabulary cut to 4096 tokens) trained on the Austen corpus
# (models/corpus.sh) with batches of 8 × 256 tokens. Prints tokens/s and where the time
# goes (MoE layers, attention, output head + loss, optimizer), as `moe train` reports it
# at the end, after WARMUP untimed steps (the first steps touch fresh memory).
# Environment: MOE (./moe), THREADS (2), STEPS (20), WARMUP (3), OUT (bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
moe=${MOE:-./moe}
threads=${THREADS:-2}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
out=${OUT:-bench/out}
mkdir -p "$out"
[ -x "$moe" ] || { echo "train.sh: $moe not built (run make)" >&2; exit 1; }
corpus=$(models/corpus.sh)
vocab=${VOCAB:-../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf}
model=$out/train-bench-init.gguf
$moe init --arch mixtral --layers 4 --embd 384 --heads 6 --kv-heads 2 --ff 384 --experts 8 --topk 2 \
    --ctx 256 --vocab "$vocab" --vocab-size 4096 --seed 1 -o "$model" >&2
args=(--data "$corpus/train.txt" --router topk --batch 8 --ctx 256 --lr 1e-3 -t "$threads")
# warm-up run: page in the data and the allocator; its numbers are not reported
$moe train -m "$model" "${args[@]}" --steps "$warmup" -o "$out/train-bench-warm.gguf" >/dev/null 2>&1
log=$out/train-bench.log
$moe train -m "$model" "${args[@]}" --steps "$steps" -o "$out/train-bench-out.gguf" 2>"$log"
params=$(grep -o "[0-9.]* M parameters" "$log" | head -n 1 || true)
echo "model: $params, 8 experts top-2, batch 8 x 256 tokens, $steps steps, $threads threads"
tr '\r' '\n' < "$log" | grep '^time:' || { echo "train.sh: no timing line in $log" >&2; exit 1; }
