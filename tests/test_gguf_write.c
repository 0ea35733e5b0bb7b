/* test_gguf_write.c — the GGUF writer: every metadata type and several tensor types
 * written and read back (by our reader and by an independent Python parser of the
 * spec), llama.cpp's fixtures rewritten byte for byte, argument validation, and the
 * atomic-write guarantees. */
#include "test.h"
#include "moe.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *path_in_tmp(const char *name) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static uint8_t *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *size = (size_t)n;
    return b;
}

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ all types */

/* Tensor payloads: random bytes of the exact size each type implies. */
typedef struct { const char *name; int type, n_dims; int64_t ne[4]; uint64_t nbytes; uint8_t *data; } tdesc;

static tdesc g_tensors[] = {
    {"token_embd.weight", 0 /* f32 */, 2, {8, 3, 1, 1}, 8 * 3 * 4, NULL},
    {"blk.0.attn_q.weight", 1 /* f16 */, 2, {16, 5, 1, 1}, 16 * 5 * 2, NULL},
    {"blk.0.ffn_up_exps.weight", 2 /* q4_0 */, 3, {64, 3, 4, 1}, 2 * 3 * 4 * 18, NULL},
    {"blk.0.ffn_down.3.weight", 8 /* q8_0 */, 2, {32, 7, 1, 1}, 7 * 34, NULL},
    {"blk.1.ffn_gate_exps.weight", 12 /* q4_K */, 4, {256, 2, 1, 3}, 6 * 144, NULL},
    {"rope_freqs.weight", 26 /* i32 */, 1, {5, 1, 1, 1}, 20, NULL},
    {"empty.weight", 0, 2, {0, 4, 1, 1}, 0, NULL},
    {"output.weight", 30 /* bf16 */, 2, {4, 4, 1, 1}, 32, NULL},
};

static const char *g_strs[] = {"", "hello", "▁wörld", "tab\there", "\"quoted\"\\"};

static void fill_random(uint8_t *p, size_t n, uint32_t *seed) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(*seed >> 24);
    }
}

/* Builds a writer holding every metadata type and g_tensors. */
static moe_gguf_writer *build_all_types(void) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    if (!w) return NULL;
    int bad = 0;
    moe_gguf_value v;
    /* scalars of every type; the setters for the common ones, set_value for the rest */
    v = (moe_gguf_value){.type = MOE_GGUF_U8, .v.u64 = 200};   bad |= moe_gguf_writer_set_value(w, "t.u8", &v);
    v = (moe_gguf_value){.type = MOE_GGUF_I8, .v.i64 = -100};  bad |= moe_gguf_writer_set_value(w, "t.i8", &v);
    v = (moe_gguf_value){.type = MOE_GGUF_U16, .v.u64 = 65535}; bad |= moe_gguf_writer_set_value(w, "t.u16", &v);
    v = (moe_gguf_value){.type = MOE_GGUF_I16, .v.i64 = -32768}; bad |= moe_gguf_writer_set_value(w, "t.i16", &v);
    bad |= moe_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    bad |= moe_gguf_writer_set_i32(w, "t.i32", -2000000000);
    bad |= moe_gguf_writer_set_f32(w, "t.f32", 0.1f);
    bad |= moe_gguf_writer_set_bool(w, "t.bool", true);
    bad |= moe_gguf_writer_set_str(w, "t.str", "Mixtral ▁ 8x7B");
    bad |= moe_gguf_writer_set_u64(w, "t.u64", 0xfedcba9876543210ull);
    v = (moe_gguf_value){.type = MOE_GGUF_I64, .v.i64 = INT64_MIN}; bad |= moe_gguf_writer_set_value(w, "t.i64", &v);
    v = (moe_gguf_value){.type = MOE_GGUF_F64, .v.f64 = -1e300}; bad |= moe_gguf_writer_set_value(w, "t.f64", &v);
    /* a string with an embedded NUL goes through set_value */
    v = (moe_gguf_value){.type = MOE_GGUF_STRING, .v.str = {"a\0b", 3}};
    bad |= moe_gguf_writer_set_value(w, "t.str_nul", &v);

    /* arrays of every scalar type */
    uint8_t a_u8[] = {0, 1, 255};
    int8_t a_i8[] = {-128, 0, 127};
    uint16_t a_u16[] = {1, 65535};
    int16_t a_i16[] = {-32768, 32767, 0};
    uint32_t a_u32[] = {7, 4294967295u};
    int32_t a_i32[] = {-1, 2, -3, 4};
    float a_f32[] = {1.5f, -0.0f, 3.25e-20f};
    bool a_bool[] = {true, false, true};
    uint64_t a_u64[] = {UINT64_MAX, 0};
    int64_t a_i64[] = {INT64_MIN, INT64_MAX};
    double a_f64[] = {3.141592653589793, -2.5e-300};
    bad |= moe_gguf_writer_set_arr(w, "a.u8", MOE_GGUF_U8, a_u8, 3);
    bad |= moe_gguf_writer_set_arr(w, "a.i8", MOE_GGUF_I8, a_i8, 3);
    bad |= moe_gguf_writer_set_arr(w, "a.u16", MOE_GGUF_U16, a_u16, 2);
    bad |= moe_gguf_writer_set_arr(w, "a.i16", MOE_GGUF_I16, a_i16, 3);
    bad |= moe_gguf_writer_set_arr(w, "a.u32", MOE_GGUF_U32, a_u32, 2);
    bad |= moe_gguf_writer_set_arr(w, "a.i32", MOE_GGUF_I32, a_i32, 4);
    bad |= moe_gguf_writer_set_arr(w, "a.f32", MOE_GGUF_F32, a_f32, 3);
    bad |= moe_gguf_writer_set_arr(w, "a.bool", MOE_GGUF_BOOL, a_bool, 3);
    bad |= moe_gguf_writer_set_arr(w, "a.u64", MOE_GGUF_U64, a_u64, 2);
    bad |= moe_gguf_writer_set_arr(w, "a.i64", MOE_GGUF_I64, a_i64, 2);
    bad |= moe_gguf_writer_set_arr(w, "a.f64", MOE_GGUF_F64, a_f64, 2);
    bad |= moe_gguf_writer_set_arr(w, "a.str", MOE_GGUF_STRING, g_strs, 5);
    bad |= moe_gguf_writer_set_arr(w, "a.empty", MOE_GGUF_U32, NULL, 0);

    /* arrays of arrays: [[1,2],[],[3]] of u32, [["x"],["y","z"]] of strings, and a
     * three-level [[[-1.5]], []] of f64 */
    uint32_t n1[] = {1, 2}, n3[] = {3};
    moe_gguf_value inner_u32[3] = {
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U32, 2, n1}},
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U32, 0, NULL}},
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U32, 1, n3}},
    };
    v = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 3, inner_u32}};
    bad |= moe_gguf_writer_set_value(w, "n.u32", &v);
    moe_gguf_str sx[] = {{"x", 1}}, syz[] = {{"y", 1}, {"zz", 2}};
    moe_gguf_value inner_str[2] = {
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_STRING, 1, sx}},
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_STRING, 2, syz}},
    };
    v = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 2, inner_str}};
    bad |= moe_gguf_writer_set_value(w, "n.str", &v);
    double d1[] = {-1.5};
    moe_gguf_value lvl3[1] = {{.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_F64, 1, d1}}};
    moe_gguf_value lvl2[2] = {
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 1, lvl3}},
        {.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 0, NULL}},
    };
    v = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 2, lvl2}};
    bad |= moe_gguf_writer_set_value(w, "n.deep", &v);
    /* the copy is deep: scribbling over the sources now must not change the file */
    n1[0] = 99;
    sx[0].ptr = "changed";
    d1[0] = 42;

    /* set again replaces in place; remove drops */
    bad |= moe_gguf_writer_set_u32(w, "t.replaced", 1);
    bad |= moe_gguf_writer_set_str(w, "t.replaced", "second");
    bad |= moe_gguf_writer_set_u32(w, "t.removed", 5);
    bad |= moe_gguf_writer_remove(w, "t.removed");

    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof g_tensors / sizeof g_tensors[0]; i++) {
        tdesc *t = &g_tensors[i];
        free(t->data);
        t->data = malloc(t->nbytes + 1);
        fill_random(t->data, t->nbytes, &seed);
        bad |= moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    if (bad) { moe_gguf_writer_free(w); return NULL; }
    return w;
}

static const char *g_key_order[] = {
    "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.f32", "t.bool", "t.str", "t.u64",
    "t.i64", "t.f64", "t.str_nul", "a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.f32",
    "a.bool", "a.u64", "a.i64", "a.f64", "a.str", "a.empty", "n.u32", "n.str", "n.deep", "t.replaced",
};

static void check_all_types(moe_gguf *g) {
    CHECK_EQ_INT(moe_gguf_version(g), 3);
    CHECK_EQ_INT(moe_gguf_alignment(g), 32);
    CHECK_EQ_INT(moe_gguf_n_kv(g), (long long)(sizeof g_key_order / sizeof g_key_order[0]));
    for (int64_t i = 0; i < moe_gguf_n_kv(g) && i < (int64_t)(sizeof g_key_order / sizeof g_key_order[0]); i++)
        CHECK_MSG(strcmp(moe_gguf_kv_key(g, i), g_key_order[i]) == 0, "key %lld: %s, expected %s",
                  (long long)i, moe_gguf_kv_key(g, i), g_key_order[i]);
    const moe_gguf_value *v;
#define SCALAR(key, ty, field, want)                                                      \
    v = moe_gguf_find(g, key);                                                            \
    CHECK_MSG(v && v->type == ty && v->v.field == want, "scalar %s", key);
    SCALAR("t.u8", MOE_GGUF_U8, u64, 200u);
    SCALAR("t.i8", MOE_GGUF_I8, i64, -100);
    SCALAR("t.u16", MOE_GGUF_U16, u64, 65535u);
    SCALAR("t.i16", MOE_GGUF_I16, i64, -32768);
    SCALAR("t.u32", MOE_GGUF_U32, u64, 4000000000u);
    SCALAR("t.i32", MOE_GGUF_I32, i64, -2000000000);
    SCALAR("t.f32", MOE_GGUF_F32, f64, (double)0.1f);
    SCALAR("t.bool", MOE_GGUF_BOOL, b, true);
    SCALAR("t.u64", MOE_GGUF_U64, u64, 0xfedcba9876543210ull);
    SCALAR("t.i64", MOE_GGUF_I64, i64, INT64_MIN);
    SCALAR("t.f64", MOE_GGUF_F64, f64, -1e300);
#undef SCALAR
    const char *s = NULL;
    CHECK(moe_gguf_get_str(g, "t.str", &s) == MOE_OK && s && strcmp(s, "Mixtral ▁ 8x7B") == 0);
    CHECK(moe_gguf_get_str(g, "t.replaced", &s) == MOE_OK && s && strcmp(s, "second") == 0);
    CHECK(moe_gguf_find(g, "t.removed") == NULL);
    v = moe_gguf_find(g, "t.str_nul");
    CHECK(v && v->type == MOE_GGUF_STRING && v->v.str.len == 3 && memcmp(v->v.str.ptr, "a\0b", 3) == 0);

    const void *d;
    uint64_t n;
#define ARR(key, ty, ctype, ...)                                                          \
    do {                                                                                  \
        const ctype want[] = {__VA_ARGS__};                                               \
        CHECK_MSG(moe_gguf_get_arr(g, key, ty, &d, &n) == MOE_OK && n == sizeof want / sizeof want[0] && \
                  memcmp(d, want, sizeof want) == 0, "array %s", key);                    \
    } while (0)
    ARR("a.u8", MOE_GGUF_U8, uint8_t, 0, 1, 255);
    ARR("a.i8", MOE_GGUF_I8, int8_t, -128, 0, 127);
    ARR("a.u16", MOE_GGUF_U16, uint16_t, 1, 65535);
    ARR("a.i16", MOE_GGUF_I16, int16_t, -32768, 32767, 0);
    ARR("a.u32", MOE_GGUF_U32, uint32_t, 7, 4294967295u);
    ARR("a.i32", MOE_GGUF_I32, int32_t, -1, 2, -3, 4);
    ARR("a.f32", MOE_GGUF_F32, float, 1.5f, -0.0f, 3.25e-20f);
    ARR("a.bool", MOE_GGUF_BOOL, bool, true, false, true);
    ARR("a.u64", MOE_GGUF_U64, uint64_t, UINT64_MAX, 0);
    ARR("a.i64", MOE_GGUF_I64, int64_t, INT64_MIN, INT64_MAX);
    ARR("a.f64", MOE_GGUF_F64, double, 3.141592653589793, -2.5e-300);
#undef ARR
    CHECK(moe_gguf_get_arr(g, "a.empty", MOE_GGUF_U32, &d, &n) == MOE_OK && n == 0);
    if (moe_gguf_get_arr(g, "a.str", MOE_GGUF_STRING, &d, &n) == MOE_OK && n == 5) {
        const moe_gguf_str *ss = d;
        for (int i = 0; i < 5; i++)
            CHECK_MSG(ss[i].len == strlen(g_strs[i]) && strcmp(ss[i].ptr, g_strs[i]) == 0, "a.str[%d]", i);
    } else {
        CHECK_MSG(0, "a.str missing");
    }

    /* nested */
    REQUIRE(moe_gguf_get_arr(g, "n.u32", MOE_GGUF_ARRAY, &d, &n) == MOE_OK && n == 3);
    const moe_gguf_value *it = d;
    CHECK(it[0].v.arr.type == MOE_GGUF_U32 && it[0].v.arr.n == 2 && ((const uint32_t *)it[0].v.arr.data)[0] == 1 &&
          ((const uint32_t *)it[0].v.arr.data)[1] == 2);
    CHECK(it[1].v.arr.type == MOE_GGUF_U32 && it[1].v.arr.n == 0);
    CHECK(it[2].v.arr.n == 1 && ((const uint32_t *)it[2].v.arr.data)[0] == 3);
    REQUIRE(moe_gguf_get_arr(g, "n.str", MOE_GGUF_ARRAY, &d, &n) == MOE_OK && n == 2);
    it = d;
    CHECK(it[0].v.arr.type == MOE_GGUF_STRING && it[0].v.arr.n == 1 &&
          strcmp(((const moe_gguf_str *)it[0].v.arr.data)[0].ptr, "x") == 0);
    CHECK(it[1].v.arr.n == 2 && strcmp(((const moe_gguf_str *)it[1].v.arr.data)[1].ptr, "zz") == 0);
    REQUIRE(moe_gguf_get_arr(g, "n.deep", MOE_GGUF_ARRAY, &d, &n) == MOE_OK && n == 2);
    it = d;
    REQUIRE(it[0].type == MOE_GGUF_ARRAY && it[0].v.arr.type == MOE_GGUF_ARRAY && it[0].v.arr.n == 1);
    const moe_gguf_value *l3 = it[0].v.arr.data;
    CHECK(l3[0].v.arr.type == MOE_GGUF_F64 && l3[0].v.arr.n == 1 && ((const double *)l3[0].v.arr.data)[0] == -1.5);
    CHECK(it[1].v.arr.type == MOE_GGUF_ARRAY && it[1].v.arr.n == 0);

    /* tensors: order, shapes, types, offsets aligned and packed as llama.cpp does, data */
    size_t nt = sizeof g_tensors / sizeof g_tensors[0];
    REQUIRE(moe_gguf_n_tensors(g) == (int64_t)nt);
    uint64_t expect_off = 0;
    for (size_t i = 0; i < nt; i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, (int64_t)i);
        const tdesc *e = &g_tensors[i];
        CHECK_MSG(strcmp(t->name, e->name) == 0, "tensor %zu name %s", i, t->name);
        CHECK_EQ_INT(t->type, e->type);
        CHECK_EQ_INT(t->n_dims, e->n_dims);
        for (int k = 0; k < 4; k++) CHECK_EQ_INT(t->ne[k], e->ne[k]);
        CHECK_EQ_INT(t->nbytes, e->nbytes);
        CHECK_EQ_INT(t->offset, expect_off);
        CHECK_EQ_INT(t->offset % 32, 0);
        CHECK_EQ_INT((moe_gguf_data_offset(g) + t->offset) % 32, 0);
        CHECK_MSG(e->nbytes == 0 || memcmp(t->data, e->data, e->nbytes) == 0, "tensor %s data", e->name);
        CHECK(moe_gguf_find_tensor(g, e->name) == t);
        expect_off += (e->nbytes + 31) / 32 * 32;
    }
    CHECK_EQ_INT(moe_gguf_data_offset(g) % 32, 0);
    /* the data section is padded to the alignment after the last tensor */
    CHECK_EQ_INT(moe_gguf_file_size(g), moe_gguf_data_offset(g) + expect_off);
}

TEST(gguf_write_all_types_roundtrip) {
    moe_gguf_writer *w = build_all_types();
    REQUIRE_MSG(w, "%s", moe_last_error());
    const char *p = path_in_tmp("all.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, p) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    moe_gguf *g = moe_gguf_open(p);
    REQUIRE_MSG(g, "%s", moe_last_error());
    check_all_types(g);
    moe_gguf_close(g);
    /* the same bytes through the in-memory entry point */
    size_t n;
    uint8_t *b = read_whole(p, &n);
    REQUIRE(b);
    g = moe_gguf_open_memory(b, n, "all-in-memory");
    REQUIRE_MSG(g, "%s", moe_last_error());
    check_all_types(g);
    moe_gguf_close(g);
    free(b);
    /* only the file: no temporary left behind */
    CHECK_EQ_INT(count_dir_entries(test_tmpdir()), 1);
}

/* An independent parser of the GGUF spec in Python reads the file and prints a
 * canonical dump; the C side prints the values it wrote in the same form. */
static const char *g_py_dump =
    "import struct,sys\n"
    "b=open(sys.argv[1],'rb').read(); p=0\n"
    "def rd(f):\n"
    "    global p; v=struct.unpack_from('<'+f,b,p); p+=struct.calcsize('<'+f); return v[0]\n"
    "def rs():\n"
    "    global p; n=rd('Q'); s=b[p:p+n]; p+=n; return s.hex()\n"
    "F={0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}\n"
    "def val(t):\n"
    "    if t==8: return 's:'+rs()\n"
    "    if t==9:\n"
    "        et=rd('I'); n=rd('Q'); return '['+','.join(val(et) for _ in range(n))+']'\n"
    "    x=rd(F[t])\n"
    "    return repr(float(x)) if t in (6,12) else str(int(x))\n"
    "assert b[:4]==b'GGUF'; p=4\n"
    "print('version',rd('I')); nt=rd('Q'); nk=rd('Q')\n"
    "for _ in range(nk):\n"
    "    k=rs(); t=rd('I'); print(bytes.fromhex(k).decode(), t, val(t))\n"
    "for _ in range(nt):\n"
    "    nm=bytes.fromhex(rs()).decode(); nd=rd('I'); ne=[rd('q') for _ in range(nd)]; ty=rd('I'); off=rd('Q')\n"
    "    print('tensor',nm,nd,ne,ty,off)\n"
    "p=(p+31)//32*32; print('data',p,len(b))\n";

TEST(gguf_write_python_parser_agrees) {
    moe_gguf_writer *w = build_all_types();
    REQUIRE_MSG(w, "%s", moe_last_error());
    const char *p = path_in_tmp("py.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, p) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    const char *py = path_in_tmp("dump.py");
    FILE *f = fopen(py, "w");
    REQUIRE(f);
    fputs(g_py_dump, f);
    fclose(f);
    char cmd[1200], *out = NULL;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", py, p);
    int rc = test_run(cmd, &out);
    if (rc == 127 || (out && strstr(out, "No such file"))) { test_skip("/usr/bin/python3 not available"); free(out); return; }
    REQUIRE_MSG(rc == 0 && out, "python parser failed: %s", out ? out : "");
    /* spot checks written by hand from what build_all_types sets */
    const char *want[] = {
        "version 3\n",
        "t.u8 0 200\n", "t.i8 1 -100\n", "t.u16 2 65535\n", "t.i16 3 -32768\n",
        "t.u32 4 4000000000\n", "t.i32 5 -2000000000\n", "t.f32 6 0.10000000149011612\n",
        "t.bool 7 1\n", "t.str 8 s:4d69787472616c20e296812038783742\n",
        "t.u64 10 18364758544493064720\n", "t.i64 11 -9223372036854775808\n", "t.f64 12 -1e+300\n",
        "t.str_nul 8 s:610062\n",
        "a.u8 9 [0,1,255]\n", "a.i8 9 [-128,0,127]\n", "a.bool 9 [1,0,1]\n",
        "a.f64 9 [3.141592653589793,-2.5e-300]\n",
        "a.str 9 [s:,s:68656c6c6f,s:e2968177c3b6726c64,s:7461620968657265,s:2271756f746564225c]\n",
        "a.empty 9 []\n",
        "n.u32 9 [[1,2],[],[3]]\n", "n.str 9 [[s:78],[s:79,s:7a7a]]\n", "n.deep 9 [[[-1.5]],[]]\n",
        "t.replaced 8 s:7365636f6e64\n",
        "tensor token_embd.weight 2 [8, 3] 0 0\n",
        "tensor blk.0.ffn_up_exps.weight 3 [64, 3, 4] 2 256\n",
        "tensor blk.1.ffn_gate_exps.weight 4 [256, 2, 1, 3] 12 960\n",
        "tensor empty.weight 2 [0, 4] 0 1856\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (want[i][0]) CHECK_STR_CONTAINS(out, want[i]);
    CHECK(strstr(out, "t.removed") == NULL);
    free(out);
}

/* ------------------------------------------------------------ fixtures */

/* Copies every key and tensor of a file into a writer. */
static moe_gguf_writer *copy_of(const moe_gguf *g) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    for (int64_t i = 0; w && i < moe_gguf_n_kv(g); i++)
        if (moe_gguf_writer_set_value(w, moe_gguf_kv_key(g, i), moe_gguf_kv_value(g, i)) != MOE_OK) {
            moe_gguf_writer_free(w);
            return NULL;
        }
    for (int64_t i = 0; w && i < moe_gguf_n_tensors(g); i++) {
        const moe_gguf_tensor *t = moe_gguf_tensor_at(g, i);
        if (moe_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes) != MOE_OK) {
            moe_gguf_writer_free(w);
            return NULL;
        }
    }
    return w;
}

/* llama-quantize (llama.cpp's gguf_write_to_file) wrote these fixtures; writing their
 * contents again must give the same bytes, which pins the layout to llama.cpp's. */
static void check_identical(const char *fixture) {
    const char *src = test_fixture(fixture);
    moe_gguf *g = moe_gguf_open(src);
    REQUIRE_MSG(g, "%s", moe_last_error());
    moe_gguf_writer *w = copy_of(g);
    REQUIRE_MSG(w, "%s", moe_last_error());
    const char *dst = path_in_tmp("copy.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, dst) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    size_t na, nb;
    uint8_t *a = read_whole(src, &na), *b = read_whole(dst, &nb);
    REQUIRE(a && b);
    CHECK_EQ_INT(na, nb);
    size_t first = 0;
    while (first < na && first < nb && a[first] == b[first]) first++;
    CHECK_MSG(first == na && na == nb, "%s: first difference at byte %zu", fixture, first);
    free(a);
    free(b);
    moe_gguf_close(g);
}

TEST(gguf_write_fixture_mixtral_q4_0_identical) { check_identical("gguf/mixtral-q4_0.gguf"); }
TEST(gguf_write_fixture_qwen2moe_q8_0_identical) { check_identical("gguf/qwen2moe-q8_0.gguf"); }
TEST(gguf_write_fixture_olmoe_q4_0_identical) { check_identical("gguf/olmoe-q4_0.gguf"); }

/* The vocabulary-only fixtures were written by gguf-py, which leaves out the padding
 * of the (empty) data section; llama.cpp's writer and ours always pad. Everything up
 * to the original's end must match, and only zero bytes may follow. */
TEST(gguf_write_fixture_vocab_only_differs_only_by_padding) {
    const char *src = test_fixture("tokenizer/ggml-vocab-llama-spm.gguf");
    moe_gguf *g = moe_gguf_open(src);
    REQUIRE_MSG(g, "%s", moe_last_error());
    moe_gguf_writer *w = copy_of(g);
    REQUIRE(w);
    const char *dst = path_in_tmp("vocab.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, dst) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    size_t na, nb;
    uint8_t *a = read_whole(src, &na), *b = read_whole(dst, &nb);
    REQUIRE(a && b);
    CHECK(nb >= na && nb - na < 32 && nb % 32 == 0);
    CHECK(memcmp(a, b, na < nb ? na : nb) == 0);
    for (size_t i = na; i < nb; i++) CHECK(b[i] == 0);
    free(a);
    free(b);
    moe_gguf_close(g);
}

/* ------------------------------------------------------------ alignment */

TEST(gguf_write_custom_alignment) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    float x[3] = {1, 2, 3}, y[5] = {4, 5, 6, 7, 8};
    CHECK(moe_gguf_writer_set_str(w, "general.architecture", "llama") == MOE_OK);
    CHECK(moe_gguf_writer_set_u32(w, "general.alignment", 4096) == MOE_OK);
    CHECK(moe_gguf_writer_add_tensor(w, "a", 0, 1, (int64_t[]){3}, x, sizeof x) == MOE_OK);
    CHECK(moe_gguf_writer_add_tensor(w, "b", 0, 1, (int64_t[]){5}, y, sizeof y) == MOE_OK);
    const char *p = path_in_tmp("al.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, p) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    moe_gguf *g = moe_gguf_open(p);
    REQUIRE_MSG(g, "%s", moe_last_error());
    CHECK_EQ_INT(moe_gguf_alignment(g), 4096);
    CHECK_EQ_INT(moe_gguf_data_offset(g), 4096);
    CHECK_EQ_INT(moe_gguf_find_tensor(g, "b")->offset, 4096);
    CHECK_EQ_INT(moe_gguf_file_size(g), 3 * 4096);
    CHECK(memcmp(moe_gguf_find_tensor(g, "b")->data, y, sizeof y) == 0);
    moe_gguf_close(g);
}

TEST(gguf_write_empty_file) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    const char *p = path_in_tmp("empty.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, p) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    size_t n;
    uint8_t *b = read_whole(p, &n);
    REQUIRE(b);
    /* magic, version 3, 0 tensors, 0 keys, zero padding to 32 */
    static const uint8_t want[32] = {'G', 'G', 'U', 'F', 3};
    CHECK_EQ_INT(n, 32);
    CHECK(n == 32 && memcmp(b, want, 32) == 0);
    free(b);
    moe_gguf *g = moe_gguf_open(p);
    CHECK(g && moe_gguf_n_kv(g) == 0 && moe_gguf_n_tensors(g) == 0);
    moe_gguf_close(g);
}

TEST(gguf_write_key_order_replace_remove) {
    /* a key set again keeps its first position and takes the new value and type */
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    CHECK(moe_gguf_writer_set_u32(w, "k.a", 1) == MOE_OK);
    CHECK(moe_gguf_writer_set_u32(w, "k.b", 2) == MOE_OK);
    CHECK(moe_gguf_writer_set_u32(w, "k.c", 3) == MOE_OK);
    CHECK(moe_gguf_writer_set_str(w, "k.a", "again") == MOE_OK);
    CHECK(moe_gguf_writer_remove(w, "k.b") == MOE_OK);
    CHECK(moe_gguf_writer_set_u32(w, "k.b", 4) == MOE_OK); /* back, now last */
    const char *p = path_in_tmp("order.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, p) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    moe_gguf *g = moe_gguf_open(p);
    REQUIRE_MSG(g, "%s", moe_last_error());
    REQUIRE(moe_gguf_n_kv(g) == 3);
    CHECK(strcmp(moe_gguf_kv_key(g, 0), "k.a") == 0);
    CHECK(strcmp(moe_gguf_kv_key(g, 1), "k.c") == 0);
    CHECK(strcmp(moe_gguf_kv_key(g, 2), "k.b") == 0);
    const char *s = NULL;
    CHECK(moe_gguf_get_str(g, "k.a", &s) == MOE_OK && s && strcmp(s, "again") == 0);
    uint32_t u = 0;
    CHECK(moe_gguf_get_u32(g, "k.b", &u) == MOE_OK && u == 4);
    moe_gguf_close(g);
}

/* ------------------------------------------------------------ validation */

TEST(gguf_write_rejects_bad_arguments) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    uint8_t buf[4096] = {0};
    /* unknown type ids: 4 and 5 are retired ggml ids, 40 is past the table */
    CHECK(moe_gguf_writer_add_tensor(w, "t4", 4, 1, (int64_t[]){32}, buf, 18) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "t4");
    CHECK_STR_CONTAINS(moe_last_error(), "type");
    CHECK(moe_gguf_writer_add_tensor(w, "t40", 40, 1, (int64_t[]){1}, buf, 4) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_add_tensor(w, "tneg", -1, 1, (int64_t[]){1}, buf, 4) == MOE_ERR_INVALID);
    /* a q4_0 row must be a multiple of 32 values */
    CHECK(moe_gguf_writer_add_tensor(w, "rows", 2, 2, (int64_t[]){48, 2}, buf, 54) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "block size");
    /* nbytes must be what the shape implies */
    CHECK(moe_gguf_writer_add_tensor(w, "size", 0, 2, (int64_t[]){4, 4}, buf, 60) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "size");
    CHECK(moe_gguf_writer_add_tensor(w, "neg", 0, 2, (int64_t[]){-4, 4}, buf, 64) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_add_tensor(w, "dims", 0, 5, (int64_t[]){1, 1, 1, 1, 1}, buf, 4) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_add_tensor(w, "ovf", 0, 4, (int64_t[]){1 << 20, 1 << 20, 1 << 20, 1 << 20}, buf, 4) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_add_tensor(w, "nodata", 0, 1, (int64_t[]){4}, NULL, 16) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_add_tensor(w, "", 0, 1, (int64_t[]){4}, buf, 16) == MOE_ERR_INVALID);
    char longname[80];
    memset(longname, 'x', 64);
    longname[64] = 0;
    CHECK(moe_gguf_writer_add_tensor(w, longname, 0, 1, (int64_t[]){4}, buf, 16) == MOE_ERR_INVALID);
    longname[63] = 0; /* 63 bytes is the longest llama.cpp accepts */
    CHECK(moe_gguf_writer_add_tensor(w, longname, 0, 1, (int64_t[]){4}, buf, 16) == MOE_OK);
    /* duplicate names */
    CHECK(moe_gguf_writer_add_tensor(w, "dup", 0, 1, (int64_t[]){4}, buf, 16) == MOE_OK);
    CHECK(moe_gguf_writer_add_tensor(w, "dup", 0, 1, (int64_t[]){4}, buf, 16) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "duplicate");
    CHECK_STR_CONTAINS(moe_last_error(), "dup");

    /* metadata */
    CHECK(moe_gguf_writer_set_u32(w, "", 1) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_u32(w, NULL, 1) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_str(w, "k", NULL) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_u32(w, "general.alignment", 48) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "general.alignment");
    CHECK(moe_gguf_writer_set_u32(w, "general.alignment", 0) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_u64(w, "general.alignment", 64) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_arr(w, "k", MOE_GGUF_ARRAY, buf, 1) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_arr(w, "k", (moe_gguf_type)13, buf, 1) == MOE_ERR_INVALID);
    CHECK(moe_gguf_writer_set_arr(w, "k", MOE_GGUF_U32, NULL, 3) == MOE_ERR_INVALID);
    const char *strs[] = {"a", NULL};
    CHECK(moe_gguf_writer_set_arr(w, "k", MOE_GGUF_STRING, strs, 2) == MOE_ERR_INVALID);
    moe_gguf_value v = {.type = MOE_GGUF_U8, .v.u64 = 256};
    CHECK(moe_gguf_writer_set_value(w, "k", &v) == MOE_ERR_INVALID);
    v = (moe_gguf_value){.type = MOE_GGUF_I16, .v.i64 = 40000};
    CHECK(moe_gguf_writer_set_value(w, "k", &v) == MOE_ERR_INVALID);
    v = (moe_gguf_value){.type = (moe_gguf_type)77};
    CHECK(moe_gguf_writer_set_value(w, "k", &v) == MOE_ERR_INVALID);
    /* an array of arrays whose element is not an array */
    moe_gguf_value items[2] = {{.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U8, 0, NULL}}, {.type = MOE_GGUF_U8}};
    v = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 2, items}};
    CHECK(moe_gguf_writer_set_value(w, "k", &v) == MOE_ERR_INVALID);
    /* nesting: 8 levels are written (the reader's limit), 9 are refused */
    moe_gguf_value lv[10];
    lv[0] = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_U8, 0, NULL}};
    for (int i = 1; i < 10; i++) lv[i] = (moe_gguf_value){.type = MOE_GGUF_ARRAY, .v.arr = {MOE_GGUF_ARRAY, 1, &lv[i - 1]}};
    CHECK(moe_gguf_writer_set_value(w, "deep8", &lv[7]) == MOE_OK);
    CHECK(moe_gguf_writer_set_value(w, "deep9", &lv[8]) == MOE_ERR_INVALID);
    CHECK_STR_CONTAINS(moe_last_error(), "deep9");
    CHECK(moe_gguf_writer_remove(w, "absent") == MOE_ERR_NOT_FOUND);
    /* none of the failures left anything behind: the file holds exactly the good calls */
    const char *p = path_in_tmp("v.gguf");
    REQUIRE_MSG(moe_gguf_writer_write(w, p) == MOE_OK, "%s", moe_last_error());
    moe_gguf_writer_free(w);
    moe_gguf *g = moe_gguf_open(p);
    REQUIRE_MSG(g, "%s", moe_last_error());
    CHECK_EQ_INT(moe_gguf_n_kv(g), 1);
    CHECK_EQ_INT(moe_gguf_n_tensors(g), 2);
    moe_gguf_close(g);
}

TEST(gguf_write_many_tensors_duplicate_detection) {
    /* enough tensors to grow the name table several times */
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    float x = 1;
    char name[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "blk.%d.ffn_up.%d.weight", i / 64, i % 64);
        REQUIRE(moe_gguf_writer_add_tensor(w, name, 0, 1, (int64_t[]){1}, &x, 4) == MOE_OK);
    }
    for (int i = 0; i < 3000; i += 97) {
        snprintf(name, sizeof name, "blk.%d.ffn_up.%d.weight", i / 64, i % 64);
        CHECK(moe_gguf_writer_add_tensor(w, name, 0, 1, (int64_t[]){1}, &x, 4) == MOE_ERR_INVALID);
    }
    moe_gguf_writer_free(w);
}

/* ------------------------------------------------------------ atomicity */

TEST(gguf_write_atomic_failure_leaves_destination) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    CHECK(moe_gguf_writer_set_str(w, "general.name", "new") == MOE_OK);
    /* a directory in the way: the rename fails after the data are written */
    const char *dir = path_in_tmp("target.gguf");
    REQUIRE(mkdir(dir, 0700) == 0);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/keep", dir);
    FILE *f = fopen(inner, "w");
    REQUIRE(f);
    fputs("x", f);
    fclose(f);
    CHECK(moe_gguf_writer_write(w, dir) == MOE_ERR_IO);
    CHECK_STR_CONTAINS(moe_last_error(), dir);
    /* the destination is untouched and no temporary is left next to it */
    CHECK_EQ_INT(count_dir_entries(dir), 1);
    CHECK_EQ_INT(count_dir_entries(test_tmpdir()), 1);
    /* a directory that does not exist */
    CHECK(moe_gguf_writer_write(w, "/nonexistent-dir-moe/x.gguf") == MOE_ERR_IO);
    CHECK_STR_CONTAINS(moe_last_error(), "/nonexistent-dir-moe/x.gguf");
    /* overwriting a file replaces it as a whole */
    const char *p = path_in_tmp("over.gguf");
    f = fopen(p, "w");
    REQUIRE(f);
    fputs("old contents that are not GGUF", f);
    fclose(f);
    CHECK(moe_gguf_writer_write(w, p) == MOE_OK);
    moe_gguf *g = moe_gguf_open(p);
    REQUIRE_MSG(g, "%s", moe_last_error());
    const char *s = NULL;
    CHECK(moe_gguf_get_str(g, "general.name", &s) == MOE_OK && s && strcmp(s, "new") == 0);
    moe_gguf_close(g);
    CHECK_EQ_INT(count_dir_entries(test_tmpdir()), 2);
    moe_gguf_writer_free(w);
}

/* Writing over the file the tensors are mapped from: the rename swaps the name while
 * the old mapping stays valid, so a file can be rewritten in place. */
TEST(gguf_write_over_own_source) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    REQUIRE(w);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(moe_gguf_writer_add_tensor(w, "x", 0, 1, (int64_t[]){8}, x, sizeof x) == MOE_OK);
    const char *p = path_in_tmp("self.gguf");
    REQUIRE(moe_gguf_writer_write(w, p) == MOE_OK);
    moe_gguf_writer_free(w);
    moe_gguf *g = moe_gguf_open(p);
    REQUIRE(g);
    w = copy_of(g);
    REQUIRE(w);
    CHECK(moe_gguf_writer_set_str(w, "general.name", "rewritten") == MOE_OK);
    CHECK(moe_gguf_writer_write(w, p) == MOE_OK);
    moe_gguf_writer_free(w);
    moe_gguf_close(g);
    g = moe_gguf_open(p);
    REQUIRE(g);
    CHECK(memcmp(moe_gguf_find_tensor(g, "x")->data, x, sizeof x) == 0);
    CHECK(moe_gguf_find(g, "general.name") != NULL);
    moe_gguf_close(g);
}
