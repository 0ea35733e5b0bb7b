/* test_cli.c — the `moe` command as a whole: every subcommand listed by `moe --help`
 * answers `--help` with exit 0 and a usage line; unknown subcommands and options fail
 * with exit 2. */
#include "test.h"

#include <stdlib.h>

TEST(cli_every_subcommand_has_help) {
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --help", test_moe_bin());
    REQUIRE(test_run(cmd, &out) == 0);
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[64];
        if (strncmp(line, "  ", 2) != 0 || line[2] == '-' || sscanf(line, " %63s", name) != 1) continue;
        char c2[512], *o2 = NULL;
        snprintf(c2, sizeof c2, "%s %s --help", test_moe_bin(), name);
        int rc = test_run(c2, &o2);
        CHECK_MSG(rc == 0, "moe %s --help exited %d", name, rc);
        CHECK_MSG(o2 && strstr(o2, "usage"), "moe %s --help prints no usage line", name);
        free(o2);
        n++;
    }
    free(out);
    CHECK_MSG(n >= 10, "only %d subcommands listed", n);
}

TEST(cli_unknown_subcommand_and_version) {
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s frobnicate", test_moe_bin());
    CHECK_EQ_INT(test_run(cmd, &out), 2);
    CHECK_STR_CONTAINS(out, "unknown subcommand");
    free(out);
    snprintf(cmd, sizeof cmd, "%s --version", test_moe_bin());
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "moe ");
    CHECK_STR_CONTAINS(out, "kernels: simd ");
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect --bogus-flag x.gguf", test_moe_bin());
    CHECK_EQ_INT(test_run(cmd, &out), 2);
    free(out);
}
