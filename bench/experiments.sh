#!/usr/bin/env bash
# bench/experiments.sh [OUT_DIR] — the small-scale experiments of docs/EXPERIMENTS.md on
# the Austen corpus (models/corpus.sh): (a) auxiliary loss vs auxiliary-loss-free
# balancing, (b) expert choice vs token-choice top-2 at equal compute, (c) dense →
# upcycled MoE vs MoE from scratch. Every run: the same 2.8 M-parameter Mixtral shape
# (4 layers, d 128, 8 experts of width 128, top-2; llama-spm vocabulary cut to 4096
# tokens), 400 steps of 16 × 64 tokens, AdamW lr 2e-3 with 20 warm-up steps and cosine
# decay, eval on Persuasion every 50 steps. Logs (JSONL) and SVG plots go to OUT_DIR
# (bench/out/experiments). Environment: MOE (./moe), THREADS (1), STEPS (400), RUNS
# ("a a2 b c c2"), SEED (1). About 2 minutes per run on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
moe=${MOE:-./moe}
out=${1:-bench/out/experiments}
threads=${THREADS:-1}
steps=${STEPS:-400}
runs=${RUNS:-"a a2 b c c2"}
seed=${SEED:-1}    # model initialisation seed; the data seed is 41 + SEED
mkdir -p "$out"
corpus=$(models/corpus.sh)
vocab=${VOCAB:-../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf}
shape="--layers 4 --embd 128 --heads 4 --kv-heads 2 --ff 128 --ctx 256 --vocab $vocab --vocab-size 4096 --seed $seed"
common="--data $corpus/train.txt --eval-data $corpus/valid.txt --batch 16 --ctx 64 --lr 2e-3 --warmup 20
        --eval-every 50 --eval-batches 8 --seed $((41 + seed)) -t $threads"
[ -s "$out/moe.gguf" ] || $moe init --arch mixtral $shape --experts 8 --topk 2 -o "$out/moe.gguf"
train() { # name model steps [router flags...]
    local name=$1 model=$2 n=$3; shift 3
    echo "== $name" >&2
    $moe train -m "$model" $common --steps "$n" "$@" --log "$out/$name.jsonl" -o "$out/$name.gguf" 2>&1 |
        { grep -E '^(time|eval)' || true; } | tail -n 2 >&2
}
for r in $runs; do
    case $r in
    a)  train topk-aux "$out/moe.gguf" "$steps" --router topk --aux-coef 0.01
        train topk-noaux "$out/moe.gguf" "$steps" --router topk --aux-coef 0
        train loss-free "$out/moe.gguf" "$steps" --router loss-free --aux-coef 0 --bias-update-rate 1e-3
        $moe plot "$out/topk-aux.jsonl" "$out/loss-free.jsonl" "$out/topk-noaux.jsonl" --smooth 10 \
            --title "aux loss (0.01) vs loss-free (u=1e-3) vs neither" -o "$out/exp-a-balancing.svg" ;;
    a2) # (a) with sigmoid gating (DeepSeek-V3's router): its sequence-wise aux loss and no
        # bias, vs the loss-free bias and no aux loss
        train ds3-aux "$out/moe.gguf" "$steps" --router deepseek-v3 --aux-coef 0.01 --bias-update-rate 0
        train ds3-loss-free "$out/moe.gguf" "$steps" --router deepseek-v3 --aux-coef 0 --bias-update-rate 1e-3
        $moe plot "$out/ds3-aux.jsonl" "$out/ds3-loss-free.jsonl" --smooth 10 \
            --title "sigmoid gating: aux loss (0.01) vs loss-free (u=1e-3)" -o "$out/exp-a2-sigmoid.svg" ;;
    b)  [ -s "$out/topk-aux.jsonl" ] || train topk-aux "$out/moe.gguf" "$steps" --router topk --aux-coef 0.01
        # capacity factor 2: each expert takes 2·T/E tokens = the compute of top-2
        train expert-choice "$out/moe.gguf" "$steps" --router expert-choice --capacity-factor 2
        $moe plot "$out/topk-aux.jsonl" "$out/expert-choice.jsonl" --smooth 10 \
            --title "token-choice top-2 vs expert choice (cf 2)" -o "$out/exp-b-expert-choice.svg" ;;
    c)  [ -s "$out/topk-aux.jsonl" ] || train topk-aux "$out/moe.gguf" "$steps" --router topk --aux-coef 0.01
        [ -s "$out/dense0.gguf" ] || $moe init --arch mixtral $shape --experts 0 -o "$out/dense0.gguf"
        half=$((steps / 2))
        train dense-half "$out/dense0.gguf" "$half"
        train dense-full "$out/dense0.gguf" "$steps"
        $moe upcycle -m "$out/dense-half.gguf" --experts 8 --topk 2 --seed 1 -o "$out/upcycled0.gguf"
        train upcycled "$out/upcycled0.gguf" "$half" --router topk --aux-coef 0.01
        $moe plot "$out/topk-aux.jsonl" "$out/dense-full.jsonl" "$out/dense-half.jsonl" "$out/upcycled.jsonl" \
            --smooth 10 --title "MoE from scratch vs dense vs dense then upcycled" -o "$out/exp-c-upcycle.svg" ;;
    c2) # the same, with the learning-rate schedule of one uninterrupted run: the dense model
        # stops half way through a 400-step cosine schedule (--stop-at), and the upcycled
        # model continues from that learning rate (step 201's) down to the same final lr
        [ -s "$out/dense0.gguf" ] || $moe init --arch mixtral $shape --experts 0 -o "$out/dense0.gguf"
        half=$((steps / 2))
        train dense-stop "$out/dense0.gguf" "$steps" --stop-at "$half"
        lr=$(grep "\"step\":$((half + 1))," "$out/dense-full.jsonl" | sed 's/.*"lr":\([^,]*\),.*/\1/')
        $moe upcycle -m "$out/dense-stop.gguf" --experts 8 --topk 2 --seed 1 -o "$out/upcycled-stop0.gguf"
        train upcycled-sched "$out/upcycled-stop0.gguf" "$half" --router topk --aux-coef 0.01 \
            --lr "$lr" --min-lr 2e-4 --warmup 0
        $moe plot "$out/topk-aux.jsonl" "$out/dense-full.jsonl" "$out/upcycled-sched.jsonl" --smooth 10 \
            --title "MoE from scratch vs dense vs dense then upcycled (one lr schedule)" -o "$out/exp-c2-upcycle.svg" ;;
    esac
done
