/* main.c — the `moe` command: dispatches to one subcommand per file (cmd_*.c). */
#include "cli/cli.h"

#include <string.h>

/* One line per subcommand; keep in the order `moe --help` should list them. */
#define MOE_COMMANDS(X) \
    X(run, "generate text from a prompt (streams to stdout)") \
    X(chat, "talk with a model, using its chat template") \
    X(inspect, "show a GGUF file's architecture, hyperparameters and tensors") \
    X(quantize, "convert a model's weights to another type (q4_0, q8_0, q4_K, ...)") \
    X(tokenize, "print the token ids of a text (the file's tokenizer)") X(detokenize, "print the text of token ids") \
    X(logits, "compute a token sequence's logits (float32 rows), optionally with the routing trace") \
    X(bench, "measure prompt and decode speed against the DRAM bandwidth bound") \
    X(cachesim, "replay a routing trace through the expert cache under each eviction policy") \
    X(profile, "count expert transitions between layers over a text (prefetch predictor)") \
    X(layer, "run one MoE layer (any router) forward/backward on safetensors files") \
    X(init, "write a randomly initialised MoE model (any architecture, a vocabulary file's tokenizer)") \
    X(train, "train a model on a text file (any router; checkpoints, resume, JSONL log)") \
    X(upcycle, "turn a dense llama model into an MoE model (experts copy the dense FFN)") \
    X(plot, "draw a training log's loss and expert-load curves as SVG")

#define DECLARE(name, summary) int cmd_##name(int argc, char **argv);
MOE_COMMANDS(DECLARE)
#undef DECLARE

static const cli_command g_commands[] = {
#define ENTRY(name, summary) {#name, cmd_##name, summary},
    MOE_COMMANDS(ENTRY)
#undef ENTRY
};

static void usage(FILE *f) {
    fprintf(f,
            "moe %s — a C engine for sparse Mixture-of-Experts models\n\n"
            "usage: moe SUBCOMMAND [options]   (moe SUBCOMMAND --help for its options)\n\n"
            "subcommands:\n",
            MOE_VERSION);
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(f, "\n  --version  print the version\n  --help     this text\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (cli_is_help(sub)) { usage(stdout); return 0; }
    if (strcmp(sub, "--version") == 0 || strcmp(sub, "version") == 0) {
        printf("moe %s\nkernels: %s\n", MOE_VERSION, moe_system_info());
        return 0;
    }
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        if (strcmp(sub, g_commands[i].name) == 0) return g_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "moe: unknown subcommand '%s'\n\n", sub);
    usage(stderr);
    return 2;
}
