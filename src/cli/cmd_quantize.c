/* cmd_quantize.c — `moe quantize IN.gguf OUT.gguf TYPE [-t N]`: converts a model's weight
 * matrices to one type, as `llama-quantize --pure` does (the work is moe_quantize_file;
 * docs/QUANTS.md says which tensors keep their type and how to check the output in
 * llama.cpp). */
#include "cli/cli.h"

#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moe quantize [options] IN.gguf OUT.gguf TYPE\n"
            "\n"
            "Converts every weight matrix of IN.gguf to TYPE with llama.cpp's reference\n"
            "quantizers (the bytes `llama-quantize --pure` writes) and writes OUT.gguf.\n"
            "Norms, biases and other 1-D tensors and the MoE router (ffn_gate_inp) are stored\n"
            "as F32; matrices whose rows are not a whole number of TYPE's blocks keep their\n"
            "type (each such tensor is named on stderr). Metadata are copied and\n"
            "general.file_type is set for TYPE. IN may be F32, F16, BF16 or quantized.\n"
            "\n"
            "TYPE: %s\n"
            "\n"
            "options:\n"
            "  -t, --threads N    threads (default: one per core)\n"
            "  -q, --quiet        no progress lines\n"
            "  --json             print a JSON summary on stdout\n"
            "  -h, --help         this text\n"
            "\n"
            "Check the output in llama.cpp: llama-cli -m OUT.gguf -p \"Hello\" -n 16\n",
            moe_quantize_type_names());
}

int cmd_quantize(int argc, char **argv) {
    const char *sub = "quantize";
    const char *pos[3];
    int npos = 0;
    bool json = false;
    moe_quantize_params p = moe_quantize_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { usage(stdout); return 0; }
        if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            int64_t v;
            if (!cli_arg_int(sub, argc, argv, &i, 1, 1024, &v)) return 2;
            p.n_threads = (int)v;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            p.progress = false;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage(sub, "unknown option '%s'", a);
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            return cli_usage(sub, "too many arguments ('%s'): expected IN.gguf OUT.gguf TYPE", a);
        }
    }
    if (npos < 3)
        return cli_usage(sub, "expected IN.gguf OUT.gguf TYPE (TYPE one of: %s)", moe_quantize_type_names());
    moe_quantize_stats st;
    if (moe_quantize_file(pos[0], pos[1], pos[2], &p, &st) != MOE_OK) return cli_fail_lib(sub);
    if (json) {
        printf("{\"input\":");
        cli_json_str(stdout, pos[0], strlen(pos[0]));
        printf(",\"output\":");
        cli_json_str(stdout, pos[1], strlen(pos[1]));
        printf(",\"type\":");
        cli_json_str(stdout, pos[2], strlen(pos[2]));
        printf(",\"tensors\":%lld,\"quantized\":%lld,\"kept\":%lld,\"kept_misfit\":%lld,"
               "\"bytes_in\":%llu,\"bytes_out\":%llu,\"seconds\":",
               (long long)st.n_tensors, (long long)st.n_quantized, (long long)st.n_kept, (long long)st.n_misfit,
               (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
        cli_json_num(stdout, st.seconds);
        printf("}\n");
    }
    return 0;
}
