/* test_default_model.c — the shipped default model (models/default.gguf, docs/DEFAULT_MODEL.md):
 * `moe run` without -m finds it next to the repository's build folder and generates text;
 * the file stays within the repository's 20 MB budget. Skips when the file is absent. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>

/* <dir of the moe binary>/../models/default.gguf: where `moe run` looks from build/moe (any build folder at the root). */
static bool default_model_path(char *out, size_t cap) {
    const char *bin = test_moe_bin();
    const char *slash = strrchr(bin, '/');
    if (!slash) return false;
    snprintf(out, cap, "%.*s/../models/default.gguf", (int)(slash - bin), bin);
    struct stat st;
    return stat(out, &st) == 0;
}

TEST(default_model_runs_without_m) {
    char path[4096];
    if (!default_model_path(path, sizeof path)) {
        test_skip("no models/default.gguf beside the build folder (%s)", path);
        return;
    }
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    CHECK_MSG(st.st_size <= 20 * 1000 * 1000, "%s is %lld bytes, over the 20 MB budget", path, (long long)st.st_size);
    char cmd[4096], *out = NULL;
    /* env -u: a MOE_MODEL in the caller's environment would take precedence */
    snprintf(cmd, sizeof cmd, "env -u MOE_MODEL %s run -p 'Once upon a time' -n 24 --temp 0 -t 1 2>/dev/null",
             test_moe_bin());
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "moe run without -m exited %d: %s", rc, out ? out : "");
    REQUIRE(out);
    /* stdout is the continuation (the prompt is not echoed): English-like text, mostly
     * letters and spaces, several words */
    const char *gen = out;
    int letters = 0, spaces = 0, total = 0;
    for (const char *q = gen; *q; q++, total++) {
        if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')) letters++;
        else if (*q == ' ') spaces++;
    }
    CHECK_MSG(total >= 20 && letters >= total / 2 && spaces >= 3, "continuation does not look like text: '%s'", gen);
    free(out);
}
