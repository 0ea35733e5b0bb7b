/* tokenizer_regex.c — the pre-tokenizer regex engine: a recursive-descent parser to a node
 * array, and a backtracking matcher with explicit continuations, so that alternation and
 * quantifiers backtrack exactly as std::regex's ECMAScript (DFS) executor does.
 *
 * Why not a DFA or Thompson NFA: llama.cpp's splits are defined by std::regex's
 * leftmost-first semantics (`\s+(?!\S)` giving back one space, ordered alternatives),
 * which a backtracking matcher reproduces by construction. To keep the recursion shallow
 * on long inputs, a repetition of a one-unit matcher (a char, a class, or a group like
 * `((?=[\p{L}])([^a-z]))`) counts its run in a loop and backtracks over the count. */
#include "model/tokenizer_regex.h"
#include "core/common.h"

#include <stdlib.h>

enum { N_CHAR, N_ANY, N_CLASS, N_SEQ, N_ALT, N_REP, N_GROUP, N_LOOK, N_BOL, N_EOL, N_WORDB, N_NWORDB };
enum { C_RANGE, C_SPACE, C_NSPACE, C_DIGIT, C_NDIGIT, C_WORD, C_NWORD };

typedef struct {
    uint8_t type;
    bool neg;      /* N_CLASS: [^...]; N_LOOK: (?!...) */
    bool greedy;   /* N_REP */
    bool unit;     /* always consumes exactly one unit, decided by that unit alone */
    int32_t a, b;  /* N_CHAR: a = unit; N_CLASS: items [a, a+b); N_SEQ/N_ALT: kids [a, a+b);
                    * N_REP: min a, max b (-1: unbounded) */
    int32_t child; /* N_REP, N_GROUP, N_LOOK */
} rnode;

typedef struct { uint32_t lo, hi; uint8_t kind; } citem;

struct moe_regex {
    rnode *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *kids;
    int32_t n_kids, cap_kids;
    citem *items;
    int32_t n_items, cap_items;
    int32_t root;
};

/* ------------------------------------------------------------------ parsing */

typedef struct {
    moe_regex *re;
    const uint32_t *p;
    size_t n, i;
    const char *what;
    bool failed;
} parser;

static bool grow(void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return true;
    int32_t nc = *cap ? *cap * 2 : 32;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) { moe_error(MOE_ERR_NOMEM, "out of memory compiling a regex"); return false; }
    *arr = p;
    *cap = nc;
    return true;
}

static int32_t fail(parser *ps, const char *msg) {
    if (!ps->failed)
        moe_error(MOE_ERR_FORMAT, "%s: regex syntax error at unit %zu: %s", ps->what, ps->i, msg);
    ps->failed = true;
    return -1;
}

static int32_t new_node(parser *ps, uint8_t type) {
    moe_regex *re = ps->re;
    if (!grow((void **)&re->nodes, &re->cap_nodes, re->n_nodes + 1, sizeof(rnode))) {
        ps->failed = true;
        return -1;
    }
    rnode *nd = &re->nodes[re->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    nd->child = -1;
    return re->n_nodes++;
}

/* Appends a node list as one contiguous run of kids; returns its first index. */
static int32_t add_kids(parser *ps, const int32_t *k, int32_t n) {
    moe_regex *re = ps->re;
    if (!grow((void **)&re->kids, &re->cap_kids, re->n_kids + n, sizeof(int32_t))) {
        ps->failed = true;
        return -1;
    }
    memcpy(re->kids + re->n_kids, k, (size_t)n * sizeof *k);
    int32_t at = re->n_kids;
    re->n_kids += n;
    return at;
}

static bool add_item(parser *ps, uint8_t kind, uint32_t lo, uint32_t hi) {
    moe_regex *re = ps->re;
    if (!grow((void **)&re->items, &re->cap_items, re->n_items + 1, sizeof(citem))) {
        ps->failed = true;
        return false;
    }
    re->items[re->n_items++] = (citem){lo, hi, kind};
    return true;
}

static bool at_end(const parser *ps) { return ps->i >= ps->n; }
static uint32_t peek(const parser *ps) { return ps->i < ps->n ? ps->p[ps->i] : 0; }

static int hexval(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* After a backslash: a character escape. Returns the unit, or -1 (error recorded) when
 * the escape is malformed. Class escapes (\d, \s, \w ...) are handled by the callers. */
static int64_t char_escape(parser *ps, bool in_class) {
    if (at_end(ps)) return fail(ps, "pattern ends with a backslash");
    uint32_t c = ps->p[ps->i++];
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'v': return '\v';
    case 'f': return '\f';
    case '0': return 0;
    case 'b': if (in_class) return '\b'; break;
    case 'c': {
        uint32_t x = peek(ps);
        if ((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z')) { ps->i++; return x % 32; }
        return fail(ps, "bad \\c escape");
    }
    case 'x': case 'u': {
        int nd = c == 'x' ? 2 : 4;
        uint32_t v = 0;
        for (int k = 0; k < nd; k++) {
            int h = hexval(peek(ps));
            if (h < 0) return fail(ps, "bad hex escape");
            v = v * 16 + (uint32_t)h;
            ps->i++;
        }
        return v;
    }
    default: break;
    }
    if (c >= '1' && c <= '9') return fail(ps, "back-references are not supported");
    return c; /* identity escape: \\ \[ \$ \- ... */
}

static int class_escape_kind(uint32_t c) {
    switch (c) {
    case 's': return C_SPACE;
    case 'S': return C_NSPACE;
    case 'd': return C_DIGIT;
    case 'D': return C_NDIGIT;
    case 'w': return C_WORD;
    case 'W': return C_NWORD;
    default: return -1;
    }
}

static int32_t parse_class(parser *ps) {
    /* '[' already consumed */
    int32_t nd = new_node(ps, N_CLASS);
    if (nd < 0) return -1;
    bool neg = false;
    if (peek(ps) == '^' && !at_end(ps)) { neg = true; ps->i++; }
    int32_t first = ps->re->n_items;
    for (;;) {
        if (at_end(ps)) return fail(ps, "unterminated [");
        uint32_t c = ps->p[ps->i];
        if (c == ']') { ps->i++; break; }
        int64_t lo;
        ps->i++;
        if (c == '\\') {
            int kind = class_escape_kind(peek(ps));
            if (kind >= 0) {
                ps->i++;
                if (!add_item(ps, (uint8_t)kind, 0, 0)) return -1;
                continue;
            }
            lo = char_escape(ps, true);
            if (lo < 0) return -1;
        } else {
            lo = c;
        }
        /* a range lo-hi, unless the '-' is the last thing before ']' */
        if (peek(ps) == '-' && ps->i + 1 < ps->n && ps->p[ps->i + 1] != ']') {
            ps->i++;
            uint32_t h = ps->p[ps->i++];
            int64_t hi = h;
            if (h == '\\') {
                if (class_escape_kind(peek(ps)) >= 0) return fail(ps, "class escape as range end");
                hi = char_escape(ps, true);
                if (hi < 0) return -1;
            }
            if (hi < lo) return fail(ps, "range out of order");
            if (!add_item(ps, C_RANGE, (uint32_t)lo, (uint32_t)hi)) return -1;
        } else {
            if (!add_item(ps, C_RANGE, (uint32_t)lo, (uint32_t)lo)) return -1;
        }
    }
    rnode *n = &ps->re->nodes[nd];
    n->neg = neg;
    n->a = first;
    n->b = ps->re->n_items - first;
    return nd;
}

static int32_t parse_alt(parser *ps);

static int32_t parse_atom(parser *ps) {
    uint32_t c = ps->p[ps->i++];
    int32_t nd;
    switch (c) {
    case '(': {
        uint8_t type = N_GROUP;
        bool neg = false;
        if (peek(ps) == '?') {
            ps->i++;
            uint32_t k = peek(ps);
            ps->i++;
            if (k == ':') type = N_GROUP;
            else if (k == '=') type = N_LOOK;
            else if (k == '!') { type = N_LOOK; neg = true; }
            else return fail(ps, "unsupported (? group");
        }
        int32_t child = parse_alt(ps);
        if (child < 0) return -1;
        if (peek(ps) != ')' || at_end(ps)) return fail(ps, "missing )");
        ps->i++;
        nd = new_node(ps, type);
        if (nd < 0) return -1;
        ps->re->nodes[nd].child = child;
        ps->re->nodes[nd].neg = neg;
        return nd;
    }
    case '[': return parse_class(ps);
    case '.': return new_node(ps, N_ANY);
    case '^': return new_node(ps, N_BOL);
    case '$': return new_node(ps, N_EOL);
    case '*': case '+': case '?': case '{': return fail(ps, "nothing to repeat");
    case '\\': {
        uint32_t e = peek(ps);
        if (e == 'b' || e == 'B') { ps->i++; return new_node(ps, e == 'b' ? N_WORDB : N_NWORDB); }
        int kind = class_escape_kind(e);
        if (kind >= 0) {
            ps->i++;
            nd = new_node(ps, N_CLASS);
            if (nd < 0) return -1;
            int32_t first = ps->re->n_items;
            if (!add_item(ps, (uint8_t)kind, 0, 0)) return -1;
            ps->re->nodes[nd].a = first;
            ps->re->nodes[nd].b = 1;
            return nd;
        }
        int64_t u = char_escape(ps, false);
        if (u < 0) return -1;
        c = (uint32_t)u;
        break;
    }
    default: break;
    }
    nd = new_node(ps, N_CHAR);
    if (nd < 0) return -1;
    ps->re->nodes[nd].a = (int32_t)c;
    return nd;
}

static bool parse_uint(parser *ps, int32_t *out) {
    if (at_end(ps) || peek(ps) < '0' || peek(ps) > '9') return false;
    int64_t v = 0;
    while (!at_end(ps) && peek(ps) >= '0' && peek(ps) <= '9') {
        v = v * 10 + (peek(ps) - '0');
        if (v > 100000) return false;
        ps->i++;
    }
    *out = (int32_t)v;
    return true;
}

static int32_t parse_quantified(parser *ps) {
    int32_t atom = parse_atom(ps);
    if (atom < 0) return -1;
    for (;;) {
        if (at_end(ps)) return atom;
        uint32_t c = peek(ps);
        int32_t mn, mx;
        if (c == '*') { mn = 0; mx = -1; ps->i++; }
        else if (c == '+') { mn = 1; mx = -1; ps->i++; }
        else if (c == '?') { mn = 0; mx = 1; ps->i++; }
        else if (c == '{') {
            ps->i++;
            if (!parse_uint(ps, &mn)) return fail(ps, "bad {n,m}");
            mx = mn;
            if (peek(ps) == ',' && !at_end(ps)) {
                ps->i++;
                if (peek(ps) == '}') mx = -1;
                else if (!parse_uint(ps, &mx) || mx < mn) return fail(ps, "bad {n,m}");
            }
            if (peek(ps) != '}' || at_end(ps)) return fail(ps, "bad {n,m}");
            ps->i++;
        } else {
            return atom;
        }
        bool greedy = true;
        if (!at_end(ps) && peek(ps) == '?') { greedy = false; ps->i++; }
        int32_t nd = new_node(ps, N_REP);
        if (nd < 0) return -1;
        rnode *n = &ps->re->nodes[nd];
        n->child = atom;
        n->a = mn;
        n->b = mx;
        n->greedy = greedy;
        atom = nd;
    }
}

/* Collects a node list in a temporary array (nested parses append to re->kids too). */
typedef struct { int32_t *v; int32_t n, cap; } ivec;
static bool ivec_push(ivec *v, int32_t x) {
    if (!grow((void **)&v->v, &v->cap, v->n + 1, sizeof(int32_t))) return false;
    v->v[v->n++] = x;
    return true;
}

static int32_t make_list(parser *ps, uint8_t type, ivec *v) {
    int32_t nd = -1;
    if (ps->failed) goto done;
    if (v->n == 1 && type == N_ALT) { nd = v->v[0]; goto done; }
    nd = new_node(ps, type);
    if (nd < 0) goto done;
    int32_t at = add_kids(ps, v->v, v->n);
    if (at < 0) { nd = -1; goto done; }
    ps->re->nodes[nd].a = at;
    ps->re->nodes[nd].b = v->n;
done:
    free(v->v);
    return nd;
}

static int32_t parse_seq(parser *ps) {
    ivec v = {0};
    while (!at_end(ps) && peek(ps) != '|' && peek(ps) != ')') {
        int32_t q = parse_quantified(ps);
        if (q < 0 || !ivec_push(&v, q)) { ps->failed = true; break; }
    }
    return make_list(ps, N_SEQ, &v);
}

static int32_t parse_alt(parser *ps) {
    ivec v = {0};
    for (;;) {
        int32_t s = parse_seq(ps);
        if (s < 0 || !ivec_push(&v, s)) { ps->failed = true; break; }
        if (at_end(ps) || peek(ps) != '|') break;
        ps->i++;
    }
    return make_list(ps, N_ALT, &v);
}

/* ------------------------------------------------------------------ one-unit matchers */

static bool is_space(uint32_t u) { return u == ' ' || (u >= '\t' && u <= '\r'); }
static bool is_digit(uint32_t u) { return u >= '0' && u <= '9'; }
static bool is_word(uint32_t u) {
    return is_digit(u) || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_';
}

static bool class_match(const moe_regex *re, const rnode *n, uint32_t u) {
    bool in = false;
    for (int32_t i = 0; i < n->b && !in; i++) {
        const citem *it = &re->items[n->a + i];
        switch (it->kind) {
        case C_RANGE: in = u >= it->lo && u <= it->hi; break;
        case C_SPACE: in = is_space(u); break;
        case C_NSPACE: in = !is_space(u); break;
        case C_DIGIT: in = is_digit(u); break;
        case C_NDIGIT: in = !is_digit(u); break;
        case C_WORD: in = is_word(u); break;
        case C_NWORD: in = !is_word(u); break;
        }
    }
    return in != n->neg;
}

static bool unit_match(const moe_regex *re, int32_t ni, uint32_t u) {
    const rnode *n = &re->nodes[ni];
    switch (n->type) {
    case N_CHAR: return u == (uint32_t)n->a;
    case N_ANY: return u != '\n' && u != '\r' && u != 0x2028 && u != 0x2029;
    case N_CLASS: return class_match(re, n, u);
    case N_GROUP: return unit_match(re, n->child, u);
    case N_ALT:
        for (int32_t i = 0; i < n->b; i++)
            if (unit_match(re, re->kids[n->a + i], u)) return true;
        return false;
    case N_SEQ: /* lookaheads on this unit, then the unit itself */
        for (int32_t i = 0; i < n->b; i++) {
            const rnode *k = &re->nodes[re->kids[n->a + i]];
            bool ok = k->type == N_LOOK ? unit_match(re, k->child, u) != k->neg
                                        : unit_match(re, re->kids[n->a + i], u);
            if (!ok) return false;
        }
        return true;
    default: return false;
    }
}

/* Bottom-up: which nodes are one-unit matchers (see unit_match). */
static void mark_units(moe_regex *re) {
    for (int32_t i = 0; i < re->n_nodes; i++) { /* children precede parents */
        rnode *n = &re->nodes[i];
        switch (n->type) {
        case N_CHAR: case N_ANY: case N_CLASS: n->unit = true; break;
        case N_GROUP: n->unit = re->nodes[n->child].unit; break;
        case N_ALT:
            n->unit = n->b > 0;
            for (int32_t k = 0; k < n->b; k++) n->unit &= re->nodes[re->kids[n->a + k]].unit;
            break;
        case N_SEQ: {
            n->unit = n->b > 0;
            for (int32_t k = 0; k < n->b && n->unit; k++) {
                const rnode *c = &re->nodes[re->kids[n->a + k]];
                if (k == n->b - 1) n->unit = c->unit;
                else n->unit = c->type == N_LOOK && re->nodes[c->child].unit;
            }
            break;
        }
        default: n->unit = false; break;
        }
    }
}

moe_regex *moe_regex_compile(const uint32_t *pat, size_t n, const char *what) {
    moe_regex *re = moe_calloc(1, sizeof *re);
    if (!re) return NULL;
    parser ps = {re, pat, n, 0, what ? what : "regex", false};
    re->root = parse_alt(&ps);
    if (!ps.failed && !at_end(&ps)) fail(&ps, "unbalanced )");
    if (ps.failed || re->root < 0) {
        if (!ps.failed) moe_error(MOE_ERR_FORMAT, "%s: regex could not be compiled", ps.what);
        moe_regex_free(re);
        return NULL;
    }
    mark_units(re);
    return re;
}

void moe_regex_free(moe_regex *re) {
    if (!re) return;
    free(re->nodes);
    free(re->kids);
    free(re->items);
    free(re);
}

/* ------------------------------------------------------------------ matching */

/* Nesting bound: each open continuation is a C stack frame of ~100 bytes. The one-unit
 * fast path keeps the patterns llama.cpp uses far below it. */
#define MAX_DEPTH 4000

enum { K_SEQ, K_REP, K_LOOK };

typedef struct { int32_t node; size_t from, end; } run_memo;

typedef struct kont {
    uint8_t kind;
    int32_t node, idx;
    size_t start;
    const struct kont *next;
} kont;

typedef struct {
    const moe_regex *re;
    const uint32_t *t;
    size_t begin, end, mstart, mend;
    bool not_null;
    int depth;
    /* the last run of each unbounded one-unit repeat body (direct-mapped by node): all of
     * [from, end) match `node`, so a later start inside it need not count again, which
     * keeps searches like `\s?x` or `\s+$` over long runs of spaces linear */
    run_memo memo[16];
} mctx;

static int m(mctx *c, int32_t ni, size_t pos, const kont *k);

static bool word_at(const mctx *c, size_t pos) { return pos >= c->begin && pos < c->end && is_word(c->t[pos]); }

static int m_seq(mctx *c, int32_t ni, int32_t idx, size_t pos, const kont *k);
static int m_rep(mctx *c, int32_t ni, int32_t count, size_t pos, const kont *k);

static int cont(mctx *c, size_t pos, const kont *k) {
    if (!k) {
        if (c->not_null && pos == c->mstart) return 0;
        c->mend = pos;
        return 1;
    }
    switch (k->kind) {
    case K_SEQ: return m_seq(c, k->node, k->idx, pos, k->next);
    case K_REP: {
        const rnode *n = &c->re->nodes[k->node];
        if (pos == k->start && k->idx > n->a) return 0; /* an empty iteration past the minimum fails */
        return m_rep(c, k->node, k->idx, pos, k->next);
    }
    default: return 1; /* K_LOOK: the lookahead's body matched */
    }
}

static int m_seq(mctx *c, int32_t ni, int32_t idx, size_t pos, const kont *k) {
    const rnode *n = &c->re->nodes[ni];
    if (idx == n->b) return cont(c, pos, k);
    kont f = {K_SEQ, ni, idx + 1, 0, k};
    return m(c, c->re->kids[n->a + idx], pos, &f);
}

static int m_rep(mctx *c, int32_t ni, int32_t count, size_t pos, const kont *k) {
    const rnode *n = &c->re->nodes[ni];
    kont f = {K_REP, ni, count + 1, pos, k};
    if (count < n->a) return m(c, n->child, pos, &f);
    bool more = n->b < 0 || count < n->b;
    if (n->greedy) {
        if (more) {
            int r = m(c, n->child, pos, &f);
            if (r) return r;
        }
        return cont(c, pos, k);
    }
    int r = cont(c, pos, k);
    if (r || !more) return r;
    return m(c, n->child, pos, &f);
}

static int m_node(mctx *c, int32_t ni, size_t pos, const kont *k) {
    const moe_regex *re = c->re;
    const rnode *n = &re->nodes[ni];
    switch (n->type) {
    case N_CHAR: case N_ANY: case N_CLASS:
        if (pos < c->end && unit_match(re, ni, c->t[pos])) return cont(c, pos + 1, k);
        return 0;
    case N_SEQ:
        if (n->unit) {
            if (pos < c->end && unit_match(re, ni, c->t[pos])) return cont(c, pos + 1, k);
            return 0;
        }
        return m_seq(c, ni, 0, pos, k);
    case N_ALT:
        for (int32_t i = 0; i < n->b; i++) {
            int r = m(c, re->kids[n->a + i], pos, k);
            if (r) return r;
        }
        return 0;
    case N_GROUP: return m(c, n->child, pos, k);
    case N_LOOK: {
        kont acc = {K_LOOK, ni, 0, 0, NULL};
        int r = m(c, n->child, pos, &acc); /* atomic: no backtracking into it */
        if (r < 0) return r;
        if ((r == 1) == n->neg) return 0;
        return cont(c, pos, k);
    }
    case N_BOL: return pos == c->begin ? cont(c, pos, k) : 0;
    case N_EOL: return pos == c->end ? cont(c, pos, k) : 0;
    case N_WORDB: case N_NWORDB: {
        bool b = word_at(c, pos - 1) != word_at(c, pos); /* pos-1 wraps when pos == 0: not a word */
        return b == (n->type == N_WORDB) ? cont(c, pos, k) : 0;
    }
    case N_REP: {
        const rnode *ch = &re->nodes[n->child];
        if (!ch->unit) return m_rep(c, ni, 0, pos, k);
        /* one-unit body: count the run, then backtrack over the count */
        size_t stop = pos;
        if (n->b >= 0) { /* bounded: at most n->b units to look at */
            while (stop < c->end && stop - pos < (size_t)n->b && unit_match(re, n->child, c->t[stop])) stop++;
        } else {
            run_memo *mm = &c->memo[n->child & 15];
            if (mm->node == n->child && pos >= mm->from && pos <= mm->end) {
                stop = mm->end;
            } else {
                while (stop < c->end && unit_match(re, n->child, c->t[stop])) stop++;
                mm->node = n->child, mm->from = pos, mm->end = stop;
            }
        }
        size_t run = stop - pos;
        if (n->b >= 0 && (size_t)n->b < run) run = (size_t)n->b;
        if (run < (size_t)n->a) return 0;
        /* followed by nothing but `$`: only the count that reaches the end can match */
        if (k && !k->next && k->kind == K_SEQ) {
            const rnode *sq = &re->nodes[k->node];
            if (k->idx + 1 == sq->b && re->nodes[re->kids[sq->a + k->idx]].type == N_EOL)
                return pos + run == c->end ? cont(c, c->end, k) : 0;
        }
        if (n->greedy) {
            for (size_t cnt = run + 1; cnt-- > (size_t)n->a;) {
                int r = cont(c, pos + cnt, k);
                if (r) return r;
            }
        } else {
            for (size_t cnt = (size_t)n->a; cnt <= run; cnt++) {
                int r = cont(c, pos + cnt, k);
                if (r) return r;
            }
        }
        return 0;
    }
    }
    return 0;
}

static int m(mctx *c, int32_t ni, size_t pos, const kont *k) {
    if (++c->depth > MAX_DEPTH) {
        moe_error(MOE_ERR_UNSUPPORTED, "pre-tokenizer regex: input needs more backtracking depth than %d", MAX_DEPTH);
        c->depth--;
        return -1;
    }
    int r = m_node(c, ni, pos, k);
    c->depth--;
    return r;
}

int moe_regex_search(const moe_regex *re, const uint32_t *text, size_t begin, size_t end,
                     size_t from, bool anchored, bool not_null, size_t *ms, size_t *me) {
    mctx c = {re, text, begin, end, 0, 0, not_null, 0, {{0}}};
    for (int i = 0; i < 16; i++) c.memo[i].node = -1;
    for (size_t s = from; s <= end; s++) {
        c.mstart = s;
        int r = m(&c, re->root, s, NULL);
        if (r < 0) return -1;
        if (r > 0) {
            *ms = s;
            *me = c.mend;
            return 1;
        }
        if (anchored) break;
    }
    return 0;
}
