#!/usr/bin/env bash
# models/train_default.sh — rebuilds models/default.gguf, the model `moe run` and
# `moe chat` load when no -m is given (docs/DEFAULT_MODEL.md): a 9.2 M-parameter Mixtral
# (4 layers, d 256, 8 heads / 4 KV heads, 8 experts of width 256, top-2, token-choice
# softmax router with renormalisation; llama-spm vocabulary cut to its first 4096 tokens)
# trained for 800 steps of 32 × 128 tokens on five Jane Austen novels (models/corpus.sh),
# evaluated on a sixth (Persuasion), then quantized to Q8_0. About 20-25 minutes on one
# core of the 2-core development machine. Environment: MOE (./moe), THREADS (1), OUT
# (bench/out/default: the F32 model, the checkpoint, the log).
set -euo pipefail
cd "$(dirname "$0")/.."
moe=${MOE:-./moe}
threads=${THREADS:-1}
out=${OUT:-bench/out/default}
mkdir -p "$out"
corpus=$(models/corpus.sh)
vocab=${VOCAB:-../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf}
$moe init --arch mixtral --layers 4 --embd 256 --heads 8 --kv-heads 4 --ff 256 --experts 8 --topk 2 \
    --ctx 512 --vocab "$vocab" --vocab-size 4096 --seed 1 -o "$out/init.gguf"
resume=()
[ -s "$out/ck.gguf" ] && resume=(--resume "$out/ck.gguf")   # continue an interrupted run
$moe train -m "$out/init.gguf" --data "$corpus/train.txt" --eval-data "$corpus/valid.txt" --router topk \
    --steps 800 --batch 32 --ctx 128 --lr 2e-3 --warmup 50 --eval-every 100 --eval-batches 8 \
    --checkpoint "$out/ck.gguf" --checkpoint-every 100 --log "$out/train.jsonl" -t "$threads" \
    "${resume[@]}" -o "$out/trained.gguf"
$moe quantize "$out/trained.gguf" models/default.gguf q8_0
$moe plot "$out/train.jsonl" --smooth 10 --title "default model (models/train_default.sh)" -o "$out/default-train.svg"
