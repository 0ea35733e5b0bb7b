/* test_install.c — `make install PREFIX=...` from the build tree under test: the binary,
 * the header, both libraries and moe.pc land under PREFIX, and a program built with
 * nothing but `pkg-config --cflags --libs --static moe` links against the installed
 * library and runs. */
#include "test.h"

#include <libgen.h>
#include <stdlib.h>
#include <sys/stat.h>

static bool exists(const char *dir, const char *rel) {
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0;
}

TEST(install_prefix) {
    /* the build tree is where the binary under test lives (make test sets MOE_BIN) */
    char bin[1024];
    snprintf(bin, sizeof bin, "%s", test_moe_bin());
    char *build = dirname(bin);
    char lib[1100];
    snprintf(lib, sizeof lib, "%s/libmoe.a", build);
    struct stat sb;
    if (!getenv("MOE_BIN") || stat(lib, &sb) != 0) { test_skip("not run from `make test` (no build tree)"); return; }
    if (test_run("command -v make && command -v pkg-config", NULL) != 0) { test_skip("make or pkg-config missing"); return; }
    /* a sanitizer build tree is installed as one, and its users link the runtimes */
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "nm '%s' 2>/dev/null | grep -q __asan_init", lib);
    bool san = test_run(cmd, NULL) == 0;
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/prefix", test_tmpdir());
    snprintf(cmd, sizeof cmd, "make -s --no-print-directory BUILD='%s' %s install PREFIX='%s'", build,
             san ? "SAN=1" : "", prefix);
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "make install failed (%d): %s", rc, out ? out : "");
    free(out);
    CHECK(exists(prefix, "bin/moe"));
    CHECK(exists(prefix, "include/moe.h"));
    CHECK(exists(prefix, "lib/libmoe.a"));
    CHECK(exists(prefix, "lib/libmoe.so"));
    CHECK(exists(prefix, "lib/pkgconfig/moe.pc"));

    /* the installed command runs */
    out = NULL;
    snprintf(cmd, sizeof cmd, "'%s/bin/moe' --version", prefix);
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "moe ");
    free(out);

    /* a user's program, built from the installed files only */
    char src[700], exe[700];
    snprintf(src, sizeof src, "%s/use.c", test_tmpdir());
    snprintf(exe, sizeof exe, "%s/use", test_tmpdir());
    FILE *f = fopen(src, "w");
    REQUIRE(f);
    fputs("#include <moe.h>\n#include <stdio.h>\n"
          "int main(int c, char **v) {\n"
          "    moe_gguf *g = c > 1 ? moe_gguf_open(v[1]) : NULL;\n"
          "    if (!g) { printf(\"error: %s\\n\", moe_last_error()); return 1; }\n"
          "    printf(\"%s %lld\\n\", MOE_VERSION, (long long)moe_gguf_n_tensors(g));\n"
          "    moe_gguf_close(g);\n"
          "    return 0;\n"
          "}\n", f);
    fclose(f);
    out = NULL;
    snprintf(cmd, sizeof cmd,
             "PKG_CONFIG_PATH='%s/lib/pkgconfig' sh -c 'cc %s -o \"%s\" \"%s\" -Wl,-Bstatic "
             "$(pkg-config --libs-only-L moe) -lmoe -Wl,-Bdynamic $(pkg-config --cflags moe) "
             "$(pkg-config --static --libs-only-l moe | sed s/-lmoe//)'",
             prefix, san ? "-fsanitize=address,undefined" : "", exe, src);
    rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "building against the installed library failed: %s\n%s", out ? out : "", cmd);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' '%s'", exe, test_fixture("gguf/olmoe-q4_0.gguf"));
    CHECK_EQ_INT(test_run(cmd, &out), 0);
    CHECK_STR_CONTAINS(out, "0.1.0 27");
    free(out);
}
