/* test_router_ref.c — every router against the PyTorch reference tests/ref/routers.py
 * (written from the papers and fairseq / flaxformer / vmoe / DeepSeek-V3 / AdaMoE / ParlAI /
 * USMoE code): expert indices exactly, weights, losses and the autograd gradient of
 * Σ dw·w + A·aux + Z·z, for both the float (library) and double instances. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>

#include "moe/router_internal.h"

typedef struct rcase {
    const char *name;   /* router */
    int E, T;
    void (*tweak)(moe_router_cfg *);
    bool bias, ids;
} rcase;

static void t_k3_cf1(moe_router_cfg *c) { c->k = 3; c->renorm = false; c->capacity_factor = 1.0; }
static void t_cf05_bpr(moe_router_cfg *c) { c->capacity_factor = 0.5; c->priority = MOE_PRIORITY_BPR; }
static void t_cf15_bpr(moe_router_cfg *c) { c->capacity_factor = 1.5; c->priority = MOE_PRIORITY_BPR; }
static void t_ec(moe_router_cfg *c) { c->capacity_factor = 2.0; c->min_capacity = 1; }
static void t_p2(moe_router_cfg *c) { c->slots_per_expert = 2; }
static void t_greedy(moe_router_cfg *c) { c->assign = MOE_ASSIGN_GREEDY; }
static void t_auction(moe_router_cfg *c) { c->assign = MOE_ASSIGN_AUCTION; }
static void t_groups(moe_router_cfg *c) { c->n_group = 4; c->topk_group = 2; c->k = 3; c->route_scale = 2.5f; }
static void t_lf(moe_router_cfg *c) { c->k = 3; c->renorm = true; c->n_group = 2; c->topk_group = 1; }
static void t_ada(moe_router_cfg *c) { c->n_null = 3; }
static void t_us(moe_router_cfg *c) { c->renorm = true; c->usmoe_alpha = 0.3f; c->usmoe_beta = 0.7f; c->k = 1; }

static const rcase CASES[] = {
    { "topk", 8, 32, NULL, false, false },
    { "topk", 8, 32, t_k3_cf1, false, false },
    { "topk", 6, 30, t_cf05_bpr, false, false },
    { "switch", 4, 32, NULL, false, false },
    { "switch", 4, 30, t_cf15_bpr, false, false },
    { "gshard", 4, 32, NULL, false, false },
    { "gshard", 5, 30, t_cf05_bpr, false, false },
    { "expert-choice", 4, 30, NULL, false, false },
    { "expert-choice", 5, 17, t_ec, false, false },
    { "soft-moe", 3, 10, t_p2, false, false },
    { "base", 4, 13, NULL, false, false },
    { "base", 4, 13, t_greedy, false, false },
    { "base", 4, 16, t_auction, false, false },
    { "deepseek-v3", 8, 16, NULL, false, false },
    { "deepseek-v3", 8, 16, t_groups, true, false },
    { "loss-free", 8, 16, NULL, true, false },
    { "loss-free", 8, 16, t_lf, true, false },
    { "adamoe", 4, 20, t_ada, false, false },
    { "hash", 4, 9, NULL, false, true },
    { "usmoe", 4, 12, NULL, false, false },
    { "usmoe", 4, 12, t_us, false, false },
};

static uint64_t g_s = 0x9E3779B97F4A7C15ull;
static double nrand(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        g_s ^= g_s << 13; g_s ^= g_s >> 7; g_s ^= g_s << 17;
        u[i] = ((double)(g_s >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static bool write_file(const char *dir, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%.400s/%.64s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void *read_file(const char *dir, const char *name, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%.400s/%.64s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *p = malloc(n ? n : 1);
    if (p && fread(p, 1, n, f) != n) { free(p); p = NULL; }
    fclose(f);
    return p;
}

typedef struct built {
    moe_router_cfg cfg;
    double *x, *dw, *dd, *dc;
    float bias[16];
    int32_t ids[64], map[64];
    int L, nc, ns;
} built;

static const double A = 0.6, Z = 0.2;

static bool prepare(const rcase *rc, const char *dir, built *b) {
    moe_router_kind kind;
    if (moe_router_from_name(rc->name, &kind) != MOE_OK) return false;
    moe_router_cfg_default(&b->cfg, kind, rc->E);
    if (rc->tweak) rc->tweak(&b->cfg);
    const int T = rc->T, L = b->L = moe_router_n_logits(&b->cfg), nc = b->nc = moe_router_n_cols(&b->cfg);
    const int ns = b->ns = kind == MOE_ROUTER_SOFT_MOE ? L : 0;
    b->x = malloc(sizeof(double) * T * L);
    b->dw = malloc(sizeof(double) * (T * nc + 1));
    b->dd = malloc(sizeof(double) * (T * ns + 1));
    b->dc = malloc(sizeof(double) * (T * ns + 1));
    /* values rounded to float so that the float instance sees the very same inputs */
    for (int i = 0; i < T * L; i++) b->x[i] = (float)(1.5 * nrand());
    for (int i = 0; i < T * nc; i++) b->dw[i] = (float)nrand();
    for (int i = 0; i < T * ns; i++) { b->dd[i] = (float)nrand(); b->dc[i] = (float)nrand(); }
    if (rc->bias) {
        for (int e = 0; e < rc->E; e++) b->bias[e] = (float)(0.2 * nrand());
        b->cfg.sel_bias = b->bias;
        if (!write_file(dir, "bias.bin", b->bias, sizeof(float) * rc->E)) return false;
    }
    if (rc->ids) {
        for (int t = 0; t < T; t++) b->ids[t] = (int32_t)(t * 7 % 23);
        for (int i = 0; i < 23; i++) b->map[i] = (int32_t)((i * 5 + 1) % rc->E);
        b->cfg.hash_map = b->map;
        b->cfg.hash_map_len = 23;
        if (!write_file(dir, "ids.bin", b->ids, sizeof(int32_t) * T) ||
            !write_file(dir, "hashmap.bin", b->map, sizeof(int32_t) * 23))
            return false;
    }
    if (!write_file(dir, "logits.bin", b->x, sizeof(double) * T * L)) return false;
    if (nc && !write_file(dir, "dw.bin", b->dw, sizeof(double) * T * nc)) return false;
    if (ns && (!write_file(dir, "dd.bin", b->dd, sizeof(double) * T * ns) ||
               !write_file(dir, "dc.bin", b->dc, sizeof(double) * T * ns)))
        return false;
    const moe_router_cfg *c = &b->cfg;
    static const char *assign[] = { "balanced", "greedy", "auction" };
    char args[1024];
    snprintf(args, sizeof args,
             "--router %s --T %d --L %d --E %d --k %d --renorm %d --capacity-factor %.17g --priority %s "
             "--min-capacity %d --n-group %d --topk-group %d --route-scale %.17g --assign %s --alpha %.17g --beta %.17g "
             "--aux-coef %.17g --z-coef %.17g\n",
             rc->name, T, L, rc->E, c->k, c->renorm ? 1 : 0, c->capacity_factor,
             c->priority == MOE_PRIORITY_BPR ? "bpr" : "token", c->min_capacity, c->n_group, c->topk_group,
             (double)c->route_scale, assign[c->assign], (double)c->usmoe_alpha, (double)c->usmoe_beta, A, Z);
    return write_file(dir, "args.txt", args, strlen(args));
}

static void compare(const rcase *rc, const char *dir, built *b) {
    const int T = rc->T, L = b->L, nc = b->nc, ns = b->ns;
    char what[128];
    snprintf(what, sizeof what, "%s (%s)", rc->name, dir + strlen(test_tmpdir()) + 1);
    int64_t *rex = nc ? read_file(dir, "ref_expert.bin", sizeof(int64_t) * T * nc) : NULL;
    double *rw = nc ? read_file(dir, "ref_weight.bin", sizeof(double) * T * nc) : NULL;
    double *rdisp = ns ? read_file(dir, "ref_dispatch.bin", sizeof(double) * T * ns) : NULL;
    double *rcomb = ns ? read_file(dir, "ref_combine.bin", sizeof(double) * T * ns) : NULL;
    double *rg = read_file(dir, "ref_dlogits.bin", sizeof(double) * T * L);
    double raux = NAN, rz = NAN;
    char path[512];
    snprintf(path, sizeof path, "%.400s/ref_scalars.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f || fscanf(f, "%lf %lf", &raux, &rz) != 2) test_fail(__FILE__, __LINE__, "%s: no ref_scalars.txt", what);
    if (f) fclose(f);
    if (!rg || (nc && (!rex || !rw)) || (ns && (!rdisp || !rcomb))) {
        test_fail(__FILE__, __LINE__, "%s: reference outputs missing", what);
        goto out;
    }
    const int32_t *ids = rc->ids ? b->ids : NULL;

    /* double instance: agreement to rounding */
    moe_routing_f64 rd = {0};
    double *gd = calloc((size_t)T * L, sizeof(double));
    if (moe_router_forward_f64(&b->cfg, rc->ids ? NULL : b->x, ids, T, &rd) != MOE_OK ||
        moe_router_backward_f64(&b->cfg, b->x, T, &rd, b->dw, b->dd, b->dc, A, Z, gd) != MOE_OK) {
        test_fail(__FILE__, __LINE__, "%s: %s", what, moe_last_error());
        free(gd);
        goto out;
    }
    int bad = 0;
    for (int i = 0; i < T * nc; i++) bad += rd.expert[i] != rex[i];
    CHECK_MSG(bad == 0, "%s: %d expert indices differ from the reference", what, bad);
    for (int i = 0; i < T * nc; i++) CHECK_MSG(fabs(rd.weight[i] - rw[i]) < 1e-12, "%s: weight[%d] %.15g vs ref %.15g", what, i, rd.weight[i], rw[i]);
    for (int i = 0; i < T * ns; i++) {
        CHECK_MSG(fabs(rd.dispatch[i] - rdisp[i]) < 1e-12, "%s: dispatch[%d]", what, i);
        CHECK_MSG(fabs(rd.combine[i] - rcomb[i]) < 1e-12, "%s: combine[%d]", what, i);
    }
    CHECK_MSG(fabs(rd.aux_loss - raux) <= 1e-12 * (1 + fabs(raux)), "%s: aux %.15g vs ref %.15g", what, rd.aux_loss, raux);
    CHECK_MSG(fabs(rd.z_loss - rz) <= 1e-12 * (1 + fabs(rz)), "%s: z %.15g vs ref %.15g", what, rd.z_loss, rz);
    for (int i = 0; i < T * L; i++)
        CHECK_MSG(fabs(gd[i] - rg[i]) <= 1e-10 * (1 + fabs(rg[i])), "%s: dlogits[%d] %.15g vs ref %.15g", what, i, gd[i], rg[i]);

    /* float instance (the library): inputs are exactly representable, so the only error
     * is float32 rounding in softmax/sigmoid and short sums (a few ulps, ~1e-7 relative,
     * times at most ~L terms); 1e-5·(1 + |ref|) is ten times stricter than the spec's 1e-4
     * and still far above that rounding. */
    moe_routing rf = {0};
    float *xf = malloc(sizeof(float) * T * L), *gf = calloc((size_t)T * L, sizeof(float));
    float *dwf = malloc(sizeof(float) * (T * nc + 1)), *ddf = malloc(sizeof(float) * (T * ns + 1)), *dcf = malloc(sizeof(float) * (T * ns + 1));
    for (int i = 0; i < T * L; i++) xf[i] = (float)b->x[i];
    for (int i = 0; i < T * nc; i++) dwf[i] = (float)b->dw[i];
    for (int i = 0; i < T * ns; i++) { ddf[i] = (float)b->dd[i]; dcf[i] = (float)b->dc[i]; }
    if (moe_router_forward(&b->cfg, rc->ids ? NULL : xf, ids, T, &rf) == MOE_OK &&
        moe_router_backward(&b->cfg, xf, T, &rf, dwf, ddf, dcf, (float)A, (float)Z, gf) == MOE_OK) {
        bad = 0;
        for (int i = 0; i < T * nc; i++) bad += rf.expert[i] != rex[i];
        CHECK_MSG(bad == 0, "%s: float: %d expert indices differ from the reference", what, bad);
        for (int i = 0; i < T * nc; i++) CHECK_MSG(fabs(rf.weight[i] - rw[i]) <= 1e-5 * (1 + fabs(rw[i])), "%s: float weight[%d]", what, i);
        for (int i = 0; i < T * ns; i++) {
            CHECK_MSG(fabs(rf.dispatch[i] - rdisp[i]) <= 1e-5 * (1 + fabs(rdisp[i])), "%s: float dispatch[%d]", what, i);
            CHECK_MSG(fabs(rf.combine[i] - rcomb[i]) <= 1e-5 * (1 + fabs(rcomb[i])), "%s: float combine[%d]", what, i);
        }
        CHECK_MSG(fabs(rf.aux_loss - raux) <= 1e-5 * (1 + fabs(raux)), "%s: float aux", what);
        CHECK_MSG(fabs(rf.z_loss - rz) <= 1e-5 * (1 + fabs(rz)), "%s: float z", what);
        for (int i = 0; i < T * L; i++)
            CHECK_MSG(fabs(gf[i] - rg[i]) <= 1e-5 * (1 + fabs(rg[i])), "%s: float dlogits[%d] %.9g vs ref %.9g", what, i, gf[i], rg[i]);
    } else {
        test_fail(__FILE__, __LINE__, "%s: float: %s", what, moe_last_error());
    }
    moe_routing_free(&rf);
    moe_routing_f64_free(&rd);
    free(gd); free(xf); free(gf); free(dwf); free(ddf); free(dcf);
out:
    free(rex); free(rw); free(rdisp); free(rcomb); free(rg);
}

TEST(router_vs_pytorch_reference) {
    const char *script = "tests/ref/routers.py";
    if (access(script, R_OK) != 0) {
        test_skip("%s not found (run the suite from the repository root)", script);
        return;
    }
    if (!test_have_python_module("torch")) {
        test_skip("python3-torch is not installed: no PyTorch reference to compare the routers with");
        return;
    }
    const int n = (int)MOE_ARRAY_LEN(CASES);
    built b[MOE_ARRAY_LEN(CASES)];
    char dirs[MOE_ARRAY_LEN(CASES)][300];
    size_t cap = 64 + strlen(script);
    for (int i = 0; i < n; i++) cap += strlen(test_tmpdir()) + 16;
    char *cmd = malloc(cap);
    size_t len = (size_t)snprintf(cmd, cap, "/usr/bin/python3 %s", script);
    memset(b, 0, sizeof b);
    for (int i = 0; i < n; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/case%02d", test_tmpdir(), i);
        REQUIRE(mkdir(dirs[i], 0700) == 0);
        REQUIRE_MSG(prepare(&CASES[i], dirs[i], &b[i]), "case %d (%s): could not write inputs", i, CASES[i].name);
        len += (size_t)snprintf(cmd + len, cap - len, " %s", dirs[i]);
    }
    char *out = NULL;
    int rc = test_run(cmd, &out);
    free(cmd);
    REQUIRE_MSG(rc == 0, "routers.py failed (%d):\n%s", rc, out ? out : "");
    free(out);
    for (int i = 0; i < n; i++) {
        compare(&CASES[i], dirs[i], &b[i]);
        free(b[i].x); free(b[i].dw); free(b[i].dd); free(b[i].dc);
    }
}
