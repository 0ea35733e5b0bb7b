/* cmd_cachesim.c — `moe cachesim`: replays a routing trace through the expert cache
 * under each eviction policy and shows how far each is from Belady's optimum. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static void help(void) {
    printf("usage: moe cachesim --trace ROUTING.jsonl (--slots N | --mem SIZE -m MODEL.gguf [-c CTX] [--kv-type T])\n"
           "                    [--policy lru|lfu|fifo|edgemoe|belady|oracle-lfu|all] [--per-layer] [--json]\n\n"
           "Replays a routing trace (written by `moe logits/run --dump-routing`) in file order through an\n"
           "expert cache and prints each policy's hit rate next to Belady's offline optimum.\n"
           "Two rows need the whole trace in advance and are yardsticks, not options of --cache-policy:\n"
           "belady (evict the expert used again farthest in the future: the best any policy can do)\n"
           "and oracle-lfu (keep the experts used most over the whole trace: the best a policy that\n"
           "goes by frequencies alone can hope for).\n\n"
           "  --trace FILE    the routing trace (JSON lines: {\"layer\":L,\"experts\":[...],...})\n"
           "  --slots N       cache size in experts (one slot = one expert's gate+up+down)\n"
           "  --mem SIZE      or: a memory budget (700M, 2G); slots = what the budget leaves after the\n"
           "                  resident weights, KV cache and scratch of MODEL (-m), as `--mem` would\n"
           "  -c N            context length assumed for the KV cache with --mem (default 2048)\n"
           "  --kv-type T     the KV cache's element type assumed with --mem: f32 (default) or f16,\n"
           "                  as the run's --kv-type\n"
           "  --policy P      one policy, or all (default)\n"
           "  --per-layer     give every layer an equal share of the slots (default: one global pool)\n"
           "  --json          one JSON object on stdout\n");
}

int cmd_cachesim(int argc, char **argv) {
    const char *sub = "cachesim", *trace_path = NULL, *model = NULL, *policy = "all";
    int64_t slots = 0, n_ctx = 2048;
    uint64_t mem = 0;
    moe_kv_type kv_type = MOE_KV_F32;
    bool per_layer = false, json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { help(); return 0; }
        else if (!strcmp(a, "--trace")) { if (!cli_arg_str(sub, argc, argv, &i, &trace_path)) return 2; }
        else if (!strcmp(a, "--slots")) { if (!cli_arg_int(sub, argc, argv, &i, 1, INT64_MAX / 2, &slots)) return 2; }
        else if (!strcmp(a, "--mem")) { if (!cli_arg_size(sub, argc, argv, &i, &mem)) return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str(sub, argc, argv, &i, &model)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { if (!cli_arg_int(sub, argc, argv, &i, 1, 1 << 24, &n_ctx)) return 2; }
        else if (!strcmp(a, "--policy")) { if (!cli_arg_str(sub, argc, argv, &i, &policy)) return 2; }
        else if (!strcmp(a, "--kv-type")) { if (!cli_arg_kv_type(sub, argc, argv, &i, &kv_type)) return 2; }
        else if (!strcmp(a, "--per-layer")) per_layer = true;
        else if (!strcmp(a, "--json")) json = true;
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!trace_path) return cli_usage(sub, "--trace is required");
    if (!slots == !mem) return cli_usage(sub, "give exactly one of --slots or --mem");
    if (mem && !model) return cli_usage(sub, "--mem needs the model (-m) to size the slots");
    int only = -1;
    if (strcmp(policy, "all") != 0 && (only = moe_cache_policy_from_name(policy)) < 0)
        return cli_usage(sub, "unknown policy '%s' (lru, lfu, fifo, edgemoe, belady, oracle-lfu, all)", policy);

    moe_offload_plan plan;
    if (mem) {
        moe_gguf *g = moe_gguf_open(model);
        if (!g) return cli_fail_lib(sub);
        moe_status st = moe_offload_plan_compute(g, mem, (int)n_ctx, kv_type, &plan);
        moe_gguf_close(g);
        if (st) return cli_fail_lib(sub);
        slots = plan.n_slots;
    }
    moe_trace *t = moe_trace_load(trace_path);
    if (!t) return cli_fail_lib(sub);

    moe_cachesim_result res[MOE_CACHE_POLICY_COUNT];
    bool ran[MOE_CACHE_POLICY_COUNT] = {false};
    int rc = 0;
    for (int p = 0; p < MOE_CACHE_POLICY_COUNT; p++) {
        /* Belady always runs: it is the yardstick */
        if (only >= 0 && p != only && p != MOE_CACHE_BELADY) continue;
        if (moe_cachesim(t, (moe_cache_policy)p, slots, per_layer, &res[p]) != MOE_OK) { rc = cli_fail_lib(sub); break; }
        ran[p] = true;
    }
    if (rc == 0) {
        double opt = res[MOE_CACHE_BELADY].hit_rate;
        if (json) {
            printf("{\"trace\":");
            cli_json_str(stdout, trace_path, strlen(trace_path));
            printf(",\"slots\":%lld,\"per_layer\":%s,\"layers\":%d,\"experts\":%d,\"lines\":%lld,\"accesses\":%lld",
                   (long long)slots, per_layer ? "true" : "false", moe_trace_n_layers(t), moe_trace_n_experts(t),
                   (long long)moe_trace_n_groups(t), (long long)moe_trace_n_accesses(t));
            if (mem) printf(",\"mem_bytes\":%llu,\"slot_bytes\":%llu", (unsigned long long)mem, (unsigned long long)plan.slot_bytes);
            printf(",\"policies\":{");
            bool first = true;
            for (int p = 0; p < MOE_CACHE_POLICY_COUNT; p++) {
                if (!ran[p]) continue;
                printf("%s\"%s\":{\"hit_rate\":", first ? "" : ",", moe_cache_policy_name((moe_cache_policy)p));
                cli_json_num(stdout, res[p].hit_rate);
                printf(",\"hits\":%lld,\"misses\":%lld,\"evictions\":%lld,\"vs_belady\":", (long long)res[p].hits,
                       (long long)res[p].misses, (long long)res[p].evictions);
                cli_json_num(stdout, opt > 0 ? res[p].hit_rate / opt : 1.0);
                printf("}");
                first = false;
            }
            printf("}}\n");
        } else {
            printf("trace %s: %lld lines, %lld expert uses, %d layers x %d experts\n", trace_path,
                   (long long)moe_trace_n_groups(t), (long long)moe_trace_n_accesses(t), moe_trace_n_layers(t),
                   moe_trace_n_experts(t));
            printf("cache: %lld slots%s", (long long)slots, per_layer ? " split per layer" : " shared by all layers");
            if (mem) printf(" (budget %.1f MiB, %.2f MiB per expert)", mem / 1048576.0, plan.slot_bytes / 1048576.0);
            printf("\n\n  %-10s %9s %9s %9s %10s\n", "policy", "hit rate", "hits", "misses", "vs Belady");
            for (int p = 0; p < MOE_CACHE_POLICY_COUNT; p++) {
                if (!ran[p]) continue;
                printf("  %-10s %8.2f%% %9lld %9lld %9.3fx\n", moe_cache_policy_name((moe_cache_policy)p),
                       100 * res[p].hit_rate, (long long)res[p].hits, (long long)res[p].misses,
                       opt > 0 ? res[p].hit_rate / opt : 1.0);
            }
        }
    }
    moe_trace_free(t);
    return rc;
}
