#!/usr/bin/env bash
# bench/offload.sh [MODEL.gguf] — expert offloading under a hard memory budget (issue 8).
#
# For budgets of 25/50/75 % of the file size, from a cold page cache, inside a memory
# cgroup of budget + 64 MiB (binary, libraries), for every cache policy and predictor:
# decode tokens/s, cache hit rate, Belady's hit rate on the same routing trace, I/O stall
# per token, bytes read per token, peak RSS, and % of the I/O bound
#     tokens/s ÷ (1 / max(compute s/token, bytes read per token ÷ disk bandwidth)),
# with compute s/token and the disk's read bandwidth measured in the same run. Where
# llama-cli is on PATH it runs under the same cgroup budget and the ratio is printed.
#
# Needs root (cgroups, drop_caches). Environment: MOE (binary, default ./moe), OUT
# (bench/out), TOKENS (256), BUDGETS ("25 50 75"), POLICIES ("lru lfu fifo edgemoe"),
# PREDICTORS ("none lookahead profile": no prefetch guesses, the next layer's router on
# this layer's input (--lookahead), EdgeMoE's statistical profile).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
moe=${MOE:-./moe}
out=${OUT:-bench/out}
tokens=${TOKENS:-256}
budgets=${BUDGETS:-"25 50 75"}
policies=${POLICIES:-"lru lfu fifo edgemoe"}
predictors=${PREDICTORS:-"none lookahead profile"}
mkdir -p "$out"
model=${1:-}
if [ -z "$model" ]; then model=$(TYPES=q8_0 bench/mix1b.sh "$out" | tail -n 1) || exit 1; fi
[ -s "$model" ] || { echo "offload.sh: $model: no such model" >&2; exit 1; }
[ -x "$moe" ] || { echo "offload.sh: $moe not built (run make)" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    echo "offload.sh: needs root to create a memory cgroup and drop the page cache; run it as root (sudo)." >&2
    exit 1
fi

# ---------------------------------------------------------------- cgroups (v2 or v1)
cg=""
cg_make() { # limit_bytes → sets $cg (a directory whose cgroup.procs we can join)
    local limit=$1 name="moe-offload-$$"
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
        cg=/sys/fs/cgroup/$name
        mkdir -p "$cg" && echo "$limit" > "$cg/memory.max" && { echo 0 > "$cg/memory.swap.max" 2>/dev/null || true; }
    elif [ -d /sys/fs/cgroup/memory ]; then
        cg=/sys/fs/cgroup/memory/$name
        mkdir -p "$cg" && echo "$limit" > "$cg/memory.limit_in_bytes" &&
            { echo "$limit" > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true; }
    else
        cg=""
    fi
    if [ -z "$cg" ] || [ ! -d "$cg" ]; then
        echo "offload.sh: cannot create a memory cgroup (no cgroup v2 memory controller and no v1 memory hierarchy)" >&2
        exit 1
    fi
}
cg_oom_kills() {
    if [ -f "$cg/memory.events" ]; then awk '/^oom_kill /{print $2}' "$cg/memory.events"
    elif [ -f "$cg/memory.oom_control" ]; then awk '/^oom_kill /{print $2; f=1} END{if(!f) print 0}' "$cg/memory.oom_control"
    else echo 0; fi
}
cg_drop() { [ -n "$cg" ] && rmdir "$cg" 2>/dev/null; cg=""; }
trap cg_drop EXIT
cold() { sync; echo 1 > /proc/sys/vm/drop_caches; }
in_cg() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"; }
json() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }

file_bytes=$(stat -c %s "$model")
echo "model: $model ($((file_bytes / 1048576)) MiB); $(lscpu | sed -n 's/^Model name: *//p'); $(nproc) cores"

# ---------------------------------------------------------------- disk bandwidth
# Two concurrent O_DIRECT streams over the two halves of the file, as the engine reads
# (the I/O thread and the compute thread both issue reads): bytes ÷ the slower stream's time.
disk_read() { # flags → bytes/s
    local half=$(( file_bytes / 2 / 8388608 )) t0 t1
    t0=$(date +%s.%N)
    dd if="$model" of=/dev/null bs=8M count="$half" "$@" 2>/dev/null &
    dd if="$model" of=/dev/null bs=8M skip="$half" count="$half" "$@" 2>/dev/null &
    wait
    t1=$(date +%s.%N)
    awk -v b=$(( half * 2 * 8388608 )) -v a="$t0" -v z="$t1" 'BEGIN{print b/(z-a)}'
}
# The virtual disks this was written on deliver anywhere from 70 MB/s to 1.5 GB/s from one
# minute to the next: three measurements, and the bound uses the fastest (a bound must not
# be beaten by the thing it bounds; with the first measurement alone it often was).
disk_all=""
for k in 1 2 3; do
    cold
    b=$(disk_read iflag=direct)
    [ -n "$b" ] && [ "${b%.*}" -gt 0 ] 2>/dev/null || { cold; b=$(disk_read); }
    disk_all="$disk_all $b"
done
disk_bps=$(echo $disk_all | tr ' ' '\n' | sort -g | tail -n 1)
echo "disk read bandwidth (2 O_DIRECT streams, 8 MiB reads, best of 3): $(awk -v b="$disk_bps" 'BEGIN{printf "%.0f MB/s", b/1e6}')" \
     "(all: $(for b in $disk_all; do awk -v b="$b" 'BEGIN{printf "%.0f ", b/1e6}'; done)MB/s)"

# ---------------------------------------------------------------- compute per token (all in RAM)
prompt="Once upon a time"
"$moe" run -m "$model" -p "$prompt" -n 32 --temp 0 --ignore-eos --json >/dev/null 2>&1 # warm the page cache
"$moe" run -m "$model" -p "$prompt" -n 64 --temp 0 --ignore-eos --json > "$out/warm.json" 2>/dev/null
warm_tps=$(json "$out/warm.json" "d['gen_tokens_per_s']")
echo "decode with everything in RAM: $(printf %.2f "$warm_tps") tokens/s"

profile="$out/profile.gguf"
if [[ " $predictors " == *" profile "* ]] && [ ! -s "$profile" ]; then
    "$moe" profile -m "$model" -f /usr/share/common-licenses/GPL-3 -o "$profile" -c 256 --max-tokens 2048 >/dev/null 2>&1 ||
        { echo "offload.sh: moe profile failed" >&2; exit 1; }
fi

printf '\n| budget | policy | predictor | tok/s | hit rate | Belady | hit/Belady | stall ms/tok | MB read/tok | peak RSS MiB | %% of I/O bound | OOM |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for pct in $budgets; do
    budget=$((file_bytes * pct / 100))
    for pol in $policies; do
        for pred in $predictors; do
            case $pred in
                none) extra=() ;;
                lookahead) extra=(--lookahead) ;;
                profile) extra=(--profile "$profile") ;;
                *) echo "offload.sh: unknown predictor $pred" >&2; exit 1 ;;
            esac
            cg_make $((budget + 64 * 1048576))
            cold
            in_cg "$moe" run -m "$model" -p "$prompt" -n "$tokens" --temp 0 --ignore-eos -c 512 --mem "$budget" \
                --cache-policy "$pol" "${extra[@]}" --dump-routing "$out/trace.jsonl" --json > "$out/run.json" 2> "$out/run.err"
            rc=$?
            ooms=$(cg_oom_kills)
            cg_drop
            if [ $rc != 0 ]; then
                printf '| %d%% | %s | %s | failed (exit %d%s): %s |\n' "$pct" "$pol" "$pred" "$rc" \
                    "$([ "${ooms:-0}" != 0 ] && echo ", OOM killed")" "$(tail -n 1 "$out/run.err")"
                continue
            fi
            slots=$(json "$out/run.json" "d['offload']['slots']")
            belady=$("$moe" cachesim --trace "$out/trace.jsonl" --slots "$slots" --policy belady --json |
                /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['policies']['belady']['hit_rate'])")
            json "$out/run.json" "'%.2f|%.4f|%.4f|%.3f|%.1f|%.1f|%.1f|%.1f' % (d['gen_tokens_per_s'], d['offload']['hit_rate'], $belady,
                d['offload']['hit_rate'] / max($belady, 1e-9), 1e3 * d['offload']['stall_seconds'] / max(1, d['n_gen'] + d['n_prompt']),
                d['offload']['bytes_read'] / 1e6 / max(1, d['n_gen'] + d['n_prompt']), d['peak_rss_bytes'] / 1048576,
                100 * d['gen_tokens_per_s'] * max(1 / $warm_tps, d['offload']['bytes_read'] / max(1, d['n_gen'] + d['n_prompt']) / $disk_bps))" |
                awk -F'|' -v p="$pct" -v pol="$pol" -v pred="$pred" -v oom="${ooms:-0}" \
                    '{printf "| %s%% | %s | %s | %s | %.1f%% | %.1f%% | %s | %s | %s | %s | %s%% | %s |\n", p, pol, pred, $1, 100*$2, 100*$3, $4, $5, $6, $7, $8, oom}'
        done
    done
    if command -v llama-cli >/dev/null 2>&1; then
        cg_make $((budget + 64 * 1048576))
        cold
        in_cg llama-cli -m "$model" -p "$prompt" -n "$tokens" --temp 0 -no-cnv -t "$(nproc)" > /dev/null 2> "$out/llama.err"
        cg_drop
        ltps=$(sed -n 's/.*eval time.*runs.*(\s*[0-9.]* ms per token, *\([0-9.]*\) tokens per second).*/\1/p' "$out/llama.err" | tail -n 1)
        echo "| $pct% | llama.cpp (page cache in the cgroup) | | ${ltps:-?} | | | | | | | | |"
    elif [ "$pct" = "${budgets%% *}" ]; then
        echo "(llama-cli not on PATH: no llama.cpp comparison)" >&2
    fi
done
