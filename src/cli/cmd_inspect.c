/* cmd_inspect.c — `moe inspect FILE.gguf`: what a GGUF file holds. */
#include "cli/cli.h"

#include <string.h>

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: moe inspect FILE.gguf\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("inspect", "unknown option %s", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return cli_usage("inspect", "more than one file given");
        }
    }
    if (!path) return cli_usage("inspect", "no file given");
    moe_gguf *g = moe_gguf_open(path);
    if (!g) return cli_fail_lib("inspect");
    printf("%s: GGUF v%u, %lld metadata keys, %lld tensors\n", path, moe_gguf_version(g),
           (long long)moe_gguf_n_kv(g), (long long)moe_gguf_n_tensors(g));
    for (int64_t i = 0; i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        printf("  %-40s type %-3d [%lld %lld %lld %lld] %llu bytes\n", t->name, t->type,
               (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
               (unsigned long long)t->nbytes);
    }
    moe_gguf_close(g);
    return 0;
}
