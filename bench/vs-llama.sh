#!/usr/bin/env bash
# bench/vs-llama.sh [MODEL.gguf ...] — moe.c's `moe bench` against llama.cpp's `llama-bench`
# on the same files, in the same session: pp (prompt processing, -p tokens in one batch)
# and tg (decode, -n tokens one at a time), median tokens/s, and the ratio moe.c/llama.cpp.
# Where no llama-bench is on PATH it says so and prints moe.c's figures alone.
#
# Default models: the mix-1b files of bench/mix1b.sh (made if missing; never commit them).
# Environment: THREADS (2), PP (128), TG (64), REPS (5), MOE (./build/moe or ./moe),
# LLAMA_BENCH (llama-bench). Prints a Markdown table (docs/BENCHMARKS.md) on stdout and
# the raw JSON of every run under bench/out/vs-llama/.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}; pp=${PP:-128}; tg=${TG:-64}; reps=${REPS:-5}
moe=${MOE:-}
if [ -z "$moe" ]; then
    for c in ./build/moe ./moe; do [ -x "$c" ] && { moe=$c; break; }; done
fi
[ -n "$moe" ] && [ -x "$moe" ] || { echo "vs-llama.sh: no moe binary (run make, or set MOE=path)" >&2; exit 1; }
llama=${LLAMA_BENCH:-llama-bench}
have_llama=0
if command -v "$llama" >/dev/null 2>&1; then
    have_llama=1
else
    echo "vs-llama.sh: '$llama' is not on PATH: printing moe.c's figures alone (install llama.cpp, or set LLAMA_BENCH=path, to compare)" >&2
fi

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    mapfile -t models < <(MOE="$moe" bench/mix1b.sh)
fi
out=bench/out/vs-llama
mkdir -p "$out"

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $threads threads; pp$pp, tg$tg, $reps reps"
if [ $have_llama = 1 ]; then
    echo "| model | moe pp$pp t/s | llama pp$pp t/s | pp ratio | moe tg$tg t/s | llama tg$tg t/s | tg ratio | moe tg % of bound |"
    echo "|---|---|---|---|---|---|---|---|"
else
    echo "| model | pp$pp t/s (min-max) | tg$tg t/s (min-max) | DRAM GB/s | MB/token | bound t/s | tg % of bound (min-max) | pool wait us/layer | CPU share % | peak RSS MiB (limit) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
fi
for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    "$moe" bench -m "$m" -t "$threads" -p "$pp" -n "$tg" -r "$reps" --json > "$out/$name.moe.json"
    if [ $have_llama = 1 ]; then
        "$llama" -m "$m" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -o json > "$out/$name.llama.json"
        /usr/bin/python3 - "$name" "$out/$name.moe.json" "$out/$name.llama.json" "$pp" "$tg" <<'EOF'
import json, sys
name, mj, lj, pp, tg = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
m = json.load(open(mj))
runs = json.load(open(lj))
def ts(n_prompt, n_gen):
    for r in runs:
        if r.get("n_prompt") == n_prompt and r.get("n_gen") == n_gen:
            return float(r["avg_ts"])
    return float("nan")
lp, lt = ts(pp, 0), ts(0, tg)
print(f"| {name} | {m['pp_tps']:.1f} | {lp:.1f} | {m['pp_tps'] / lp:.2f} | {m['tg_tps']:.1f} | {lt:.1f} | "
      f"{m['tg_tps'] / lt:.2f} | {m['tg_pct_of_bound']:.1f} |")
EOF
    else
        /usr/bin/python3 - "$name" "$out/$name.moe.json" <<'EOF'
import json, sys
name, m = sys.argv[1], json.load(open(sys.argv[2]))
print(f"| {name} | {m['pp_tps']:.1f} ({m['pp_tps_min']:.1f}-{m['pp_tps_max']:.1f}) | "
      f"{m['tg_tps']:.1f} ({m['tg_tps_min']:.1f}-{m['tg_tps_max']:.1f}) | {m['dram_gbps']:.1f} | "
      f"{m['bytes_per_token'] / 1e6:.1f} | {m['tg_bound_tps']:.1f} | {m['tg_pct_of_bound']:.1f} "
      f"({m['tg_pct_of_bound_min']:.0f}-{m['tg_pct_of_bound_max']:.0f}) | {m['pool_wait_us_per_layer']:.1f} | "
      f"{m.get('tg_cpu_share_pct', float('nan')):.0f} | {m['peak_rss_bytes'] / 2**20:.0f} ({m['rss_limit_bytes'] / 2**20:.0f}) |")
EOF
    fi
done
