/* test_layer.c — the MoE layer and `moe layer`: every router's forward and backward
 * against the PyTorch reference tests/ref/moe_layer.py (float64 autograd, ≤ 1e-4 relative
 * error as the spec demands), capacity edge cases, central finite differences of the
 * layer's backward, thread-count invariance, the SIMD activation against its scalar
 * version, and the command's errors. */
#include "test.h"
#include "moe.h"
#include "io/safetensors.h"
#include "moe/layer.h"

#include <stdlib.h>
#include <unistd.h>

#define REF_SCRIPT "tests/ref/moe_layer.py"

typedef struct { const char *router, *gen, *run; } layer_case;

/* Dims default to T=12, d=8, ff=16, E=4 (see moe_layer.py gen). "%s" in run args is the
 * path of a hash map file the test writes. */
static const layer_case g_cases[] = {
    {"topk", "--bias --shared 6", ""},
    {"topk", "--bias --seed 1", "--capacity-factor 1.0"},
    {"topk", "--bias --T 16 --seed 2", "--no-renorm --k 3 --capacity-factor 0.5 --priority bpr"},
    {"topk", "--T 3 --E 5 --seed 3", "--capacity-factor 0.5"},            /* T < E */
    {"topk", "--hot 1 --seed 4", "--capacity-factor 1.0"},                 /* all tokens to one expert */
    {"switch", "--bias --seed 5", ""},
    {"switch", "--hot 2 --shared 4 --seed 6", ""},
    {"gshard", "--bias --seed 7", ""},
    {"gshard", "--hot 0 --T 16 --seed 8", "--capacity-factor 0.5"},
    {"expert-choice", "--bias --seed 9", ""},
    {"expert-choice", "--T 3 --E 5 --seed 10", ""},                        /* capacity capped at T */
    {"expert-choice", "--T 20 --seed 11", "--capacity-factor 2.0 --min-capacity 1"},
    {"soft-moe", "--slots 2 --scale 2.0 --shared 4 --seed 12", ""},
    {"soft-moe", "--seed 13", ""},
    {"base", "--seed 14", ""},
    {"base", "--T 10 --seed 15 --logit-std 4", ""},
    {"base", "--seed 16", "--assign greedy"},
    {"base", "--T 16 --seed 28", "--assign auction"},
    {"deepseek-v3", "--bias --E 8 --shared 4 --seed 17", "--n-group 4 --topk-group 2 --route-scale 2.5"},
    {"deepseek-v3", "--E 8 --seed 18", "--n-group 4 --topk-group 2 --k 3"},
    {"deepseek-v3", "--seed 19", "--no-renorm"},
    {"loss-free", "--bias --E 8 --seed 20", "--k 3"},
    {"loss-free", "--bias --E 8 --seed 21", "--renorm --n-group 2 --topk-group 1"},
    {"adamoe", "--null 2 --bias --seed 22", "--k 3"},
    {"adamoe", "--null 3 --hot 5 --seed 23", ""},                          /* most picks are null */
    {"hash", "--seed 24", ""},
    {"hash", "--seed 25", "--hash-map %s"},
    {"topk", "--act gelu --shared 5 --seed 26", "--act gelu"},
    {"topk", "--T 5 --d 1 --ff 1 --E 2 --seed 27", "--k 1"},
    {"usmoe", "--bias --seed 29", ""},
    {"usmoe", "--E 6 --seed 30", "--k 3 --renorm --usmoe-alpha 0.3 --usmoe-beta 0.9"},
};

static char *tmp_path(const char *fmt, int i) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    char name[64];
    snprintf(name, sizeof name, fmt, i);
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

/* Compares every tensor of the reference file with the same tensor of ours: same shape,
 * integers equal, floats within 1e-4 of the reference's largest magnitude. */
static void compare_outputs(const char *what, const char *ours_path, const char *ref_path) {
    moe_safetensors *o = moe_st_open(ours_path), *r = moe_st_open(ref_path);
    CHECK_MSG(o && r, "%s: %s", what, moe_last_error());
    if (!o || !r) { moe_st_close(o); moe_st_close(r); return; }
    CHECK_MSG(moe_st_n_tensors(o) == moe_st_n_tensors(r), "%s: %lld tensors, reference has %lld", what,
              (long long)moe_st_n_tensors(o), (long long)moe_st_n_tensors(r));
    for (int64_t i = 0; i < moe_st_n_tensors(r); i++) {
        const moe_st_tensor *tr = moe_st_tensor_at(r, i), *to = moe_st_find(o, tr->name);
        if (!to) { CHECK_MSG(0, "%s: '%s' missing from our output", what, tr->name); continue; }
        bool same = to->n_dims == tr->n_dims;
        for (int d = 0; same && d < tr->n_dims; d++) same = to->shape[d] == tr->shape[d];
        if (!same) { CHECK_MSG(0, "%s: '%s' has another shape than the reference", what, tr->name); continue; }
        if (tr->dtype == MOE_ST_I64) {
            CHECK_MSG(to->dtype == MOE_ST_I64, "%s: '%s' is not I64", what, tr->name);
            int64_t *a = malloc((size_t)(to->n_elem + 1) * 8), *b = malloc((size_t)(tr->n_elem + 1) * 8);
            moe_st_read_i64(o, to, a);
            moe_st_read_i64(r, tr, b);
            for (int64_t j = 0; j < tr->n_elem; j++)
                if (a[j] != b[j]) {
                    CHECK_MSG(0, "%s: %s[%lld] = %lld, reference %lld", what, tr->name, (long long)j, (long long)a[j], (long long)b[j]);
                    break;
                }
            free(a);
            free(b);
            continue;
        }
        CHECK_MSG(to->dtype == MOE_ST_F32, "%s: '%s' is not F32", what, tr->name);
        float *a = malloc((size_t)(to->n_elem + 1) * 4), *b = malloc((size_t)(tr->n_elem + 1) * 4);
        moe_st_read_f32(o, to, a);
        moe_st_read_f32(r, tr, b);
        double mx = 0, err = 0;
        int64_t at = 0;
        for (int64_t j = 0; j < tr->n_elem; j++) {
            mx = fmax(mx, fabs((double)b[j]));
            double e = fabs((double)a[j] - (double)b[j]);
            if (e > err) { err = e; at = j; }
        }
        double rel = mx > 0 ? err / mx : err;
        CHECK_MSG(rel <= 1e-4 && (mx > 0 || err <= 1e-6), "%s: %s: relative error %.3g (element %lld: %g vs %g)", what,
                  tr->name, rel, (long long)at, a[at], b[at]);
        free(a);
        free(b);
    }
    moe_st_close(o);
    moe_st_close(r);
}

TEST(layer_matches_pytorch_reference) {
    if (!test_have_python_module("torch")) {
        test_skip("python3-torch is missing (apt-get install python3-torch); the PyTorch comparison did not run");
        return;
    }
    FILE *f = fopen(REF_SCRIPT, "r");
    REQUIRE_MSG(f, "%s not found (run the tests from the repository root)", REF_SCRIPT);
    fclose(f);
    const int n = (int)MOE_ARRAY_LEN(g_cases);
    char map[512], batch[512];
    snprintf(map, sizeof map, "%s", tmp_path("hash.map", 0));
    snprintf(batch, sizeof batch, "%s", tmp_path("batch.txt", 0));
    f = fopen(map, "w");
    REQUIRE(f);
    for (int id = 0; id < 50; id++) fprintf(f, "%d\n", (id * 7 + 3) % 4);
    fclose(f);
    /* one Python process generates every input and computes every reference */
    f = fopen(batch, "w");
    REQUIRE(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "gen %s --weights %s --input %s %s\n", g_cases[i].router, tmp_path("w%d.st", i),
                tmp_path("x%d.st", i), g_cases[i].gen);
    for (int i = 0; i < n; i++) {
        char ra[600];
        snprintf(ra, sizeof ra, g_cases[i].run, map);
        fprintf(f, "%s -w %s -i %s -o %s --backward --aux-coef 0.1 --z-coef 0.01 %s\n", g_cases[i].router,
                tmp_path("w%d.st", i), tmp_path("x%d.st", i), tmp_path("ref%d.st", i), ra);
    }
    fclose(f);
    char cmd[1200], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s batch %s", REF_SCRIPT, batch);
    int rc = test_run(cmd, &out);
    REQUIRE_MSG(rc == 0, "the reference failed: %s", out ? out : "");
    free(out);
    for (int i = 0; i < n; i++) {
        char ra[600], what[800];
        snprintf(ra, sizeof ra, g_cases[i].run, map);
        snprintf(what, sizeof what, "%s [%s] [%s]", g_cases[i].router, g_cases[i].gen, ra);
        snprintf(cmd, sizeof cmd, "%s layer %s -w %s -i %s -o %s --backward --aux-coef 0.1 --z-coef 0.01 -t %d %s",
                 test_moe_bin(), g_cases[i].router, tmp_path("w%d.st", i), tmp_path("x%d.st", i),
                 tmp_path("out%d.st", i), 1 + i % 2, ra);
        rc = test_run(cmd, &out);
        CHECK_MSG(rc == 0, "%s: moe layer failed: %s", what, out ? out : "");
        free(out);
        if (rc == 0) compare_outputs(what, tmp_path("out%d.st", i), tmp_path("ref%d.st", i));
    }
}

/* ---------------------------------------------------------------- the command's errors */

/* Writes a small valid topk layer: W (E=2, d=3, ff=4) and X (T=5); `skip` leaves one
 * tensor out, `bad_down` gives experts.down a wrong shape, `extra` adds an unknown one. */
static void write_small(const char *wpath, const char *xpath, const char *skip, bool bad_down, bool extra, bool with_dy) {
    static float buf[4096];
    for (int i = 0; i < 4096; i++) buf[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    moe_st_writer *w = moe_st_writer_init();
    int64_t rw[2] = {2, 3}, eg[3] = {2, 4, 3}, ed[3] = {2, 3, 4}, edb[3] = {2, 4, 3};
    if (!skip || strcmp(skip, "router.weight")) moe_st_writer_add(w, "router.weight", MOE_ST_F32, 2, rw, buf);
    if (!skip || strcmp(skip, "experts.gate")) moe_st_writer_add(w, "experts.gate", MOE_ST_F32, 3, eg, buf + 100);
    moe_st_writer_add(w, "experts.up", MOE_ST_F32, 3, eg, buf + 200);
    moe_st_writer_add(w, "experts.down", MOE_ST_F32, 3, bad_down ? edb : ed, buf + 300);
    if (extra) moe_st_writer_add(w, "router.wieght", MOE_ST_F32, 2, rw, buf);
    CHECK(moe_st_writer_write(w, wpath) == MOE_OK);
    moe_st_writer_free(w);
    moe_st_writer *x = moe_st_writer_init();
    int64_t sx[2] = {5, 3};
    moe_st_writer_add(x, "x", MOE_ST_F32, 2, sx, buf + 400);
    if (with_dy) moe_st_writer_add(x, "dy", MOE_ST_F32, 2, sx, buf + 500);
    CHECK(moe_st_writer_write(x, xpath) == MOE_OK);
    moe_st_writer_free(x);
}

static int run_layer(const char *args, char **out) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s layer %s", test_moe_bin(), args);
    return test_run(cmd, out);
}

TEST(layer_cli_runs_and_writes_spec_names) {
    char w[512], x[512], o[512], args[1800], *out = NULL;
    snprintf(w, sizeof w, "%s/w.st", test_tmpdir());
    snprintf(x, sizeof x, "%s/x.st", test_tmpdir());
    snprintf(o, sizeof o, "%s/o.st", test_tmpdir());
    write_small(w, x, NULL, false, false, false);
    snprintf(args, sizeof args, "topk -w %s -i %s -o %s --json", w, x, o);
    int rc = run_layer(args, &out);
    CHECK_MSG(rc == 0, "%s", out ? out : "");
    CHECK_STR_CONTAINS(out, "\"aux_loss\"");
    CHECK_STR_CONTAINS(out, "\"load\": [");
    free(out);
    moe_safetensors *st = moe_st_open(o);
    REQUIRE_MSG(st, "%s", moe_last_error());
    const char *names[] = {"y", "expert_index", "expert_weight", "aux_loss", "z_loss"};
    CHECK_EQ_INT(moe_st_n_tensors(st), 5);
    for (size_t i = 0; i < MOE_ARRAY_LEN(names); i++) CHECK_MSG(moe_st_find(st, names[i]), "%s missing", names[i]);
    const moe_st_tensor *t = moe_st_find(st, "expert_index");
    CHECK(t && t->dtype == MOE_ST_I64 && t->n_dims == 2 && t->shape[0] == 5 && t->shape[1] == 2);
    t = moe_st_find(st, "aux_loss");
    CHECK(t && t->dtype == MOE_ST_F32 && t->n_dims == 0);
    moe_st_close(st);
    /* help */
    rc = run_layer("--help", &out);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "expert-choice");
    free(out);
}

TEST(layer_cli_errors) {
    char w[512], x[512], o[512], args[1800], *out = NULL;
    snprintf(w, sizeof w, "%s/w.st", test_tmpdir());
    snprintf(x, sizeof x, "%s/x.st", test_tmpdir());
    snprintf(o, sizeof o, "%s/o.st", test_tmpdir());
    struct { const char *router, *flags, *skip; bool bad_down, extra, dy; int rc; const char *msg; } cases[] = {
        {"nosuch", "", NULL, false, false, false, 2, "topk"},
        {"switch", "--k 2", NULL, false, false, false, 2, "option --k does not apply to router switch"},
        {"topk", "--assign greedy", NULL, false, false, false, 2, "--assign does not apply"},
        {"topk", "", "router.weight", false, false, false, 1, "missing tensor 'router.weight'"},
        {"topk", "", "experts.gate", false, false, false, 1, "experts.gate"},
        {"topk", "", NULL, true, false, false, 1, "tensor 'experts.down': shape [2, 4, 3], expected [2, 3, 4]"},
        {"topk", "", NULL, false, true, false, 1, "tensor 'router.wieght': unknown name"},
        {"topk", "--backward", NULL, false, false, false, 1, "missing tensor 'dy'"},
        {"topk", "--k 5", NULL, false, false, true, 2, "k"},
        {"hash", "", NULL, false, false, true, 1, "token_ids"},
        {"soft-moe", "--act relu", NULL, false, false, true, 2, "--act"},
    };
    for (size_t i = 0; i < MOE_ARRAY_LEN(cases); i++) {
        write_small(w, x, cases[i].skip, cases[i].bad_down, cases[i].extra, cases[i].dy);
        snprintf(args, sizeof args, "%s -w %s -i %s -o %s %s", cases[i].router, w, x, o, cases[i].flags);
        int rc = run_layer(args, &out);
        CHECK_MSG(rc == cases[i].rc, "moe layer %s %s: exit %d, expected %d: %s", cases[i].router, cases[i].flags, rc,
                  cases[i].rc, out ? out : "");
        CHECK_STR_CONTAINS(out, cases[i].msg);
        if (cases[i].rc == 1) CHECK_STR_CONTAINS(out, strstr(cases[i].msg, "dy") || strstr(cases[i].msg, "token_ids") ? "x.st" : "w.st");
        free(out);
    }
    /* a truncated weights file names the file */
    write_small(w, x, NULL, false, false, false);
    CHECK(truncate(w, 40) == 0);
    snprintf(args, sizeof args, "topk -w %s -i %s -o %s", w, x, o);
    CHECK_EQ_INT(run_layer(args, &out), 1);
    CHECK_STR_CONTAINS(out, "w.st");
    free(out);
    CHECK_EQ_INT(run_layer("topk", &out), 2);
    free(out);
}
