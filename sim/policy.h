/* policy.h — KV-cache eviction policies behind one small function table.
 *
 * A Policy is one cache unit's eviction state: the tokens it holds (positions
 * in increasing order), a score per held token, and what the policy needs to
 * update them.  Whoever owns the cache — the offline replay (simulate) or the
 * live model (eval) — drives it the same way, once per step t:
 *
 *     policy_insert(p, t, features);          token t enters (protected now)
 *     while (p->n > p->budget) policy_evict(p, t);
 *     ... the queries attend over p->tokens[0..n) ...
 *     policy_observe(p, r, t);                r[j] = observed attention of tokens[j]
 *
 * (docs/semantics.md, "The replay loop".)  The victim is the unprotected token with
 * the lowest score, ties to the oldest; protected are the first `sink`
 * tokens, the `recent` newest ones (i > t - recent), and token t itself.
 * Since tokens are kept in position order, the unprotected tokens are one
 * contiguous slot range [lo, hi), which is all a victim function scans.
 *
 * Adding a policy: one file defining a PolicyOps and its PolicyParam table,
 * a line in registry.c, a test. */
#ifndef KV_POLICY_H
#define KV_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../util/error.h"

/* Each policy declares its parameters in a table of PolicyParam (its own
 * file); one generic parser (policy.c) reads "name:key=value,..." against
 * that table, applies the defaults, checks types and bounds and writes the
 * canonical string.  A parsed value lives in PolicySpec.value at the index
 * of its key in the policy's table, so a policy reads its own parameters by
 * its own indices and no shared file lists them. */
#define POLICY_MAX_PARAMS 6
#define POLICY_MAX_LIST 64

typedef enum {
    PARAM_REAL,    /* a number in [min, max] (max itself refused when open_max) */
    PARAM_COUNT,   /* a whole number in [min, max] */
    PARAM_CHOICE,  /* one word of `choices` ("h2o|a2sf"); the value is its index */
    PARAM_LAYERS,  /* layer numbers joined by '+', or "none" */
} ParamType;

/* How a default that leaves no room to evict at a small budget shrinks
 * (policy_fit_budget); a value the user gave never changes. */
typedef enum {
    SHRINK_NEVER,
    SHRINK_HALF_BUDGET, /* becomes max(1, B/2) (windows, pages) */
    SHRINK_SINK,        /* becomes at most (B - recent tokens)/2 */
} ParamShrink;

typedef struct {
    const char *key;
    ParamType type;
    const char *fallback;  /* the default, as the user would write it */
    double min, max;       /* REAL, COUNT bounds */
    int open_max;
    const char *choices;   /* CHOICE: "word|word" */
    const char *help;      /* one line for --list */
    ParamShrink shrink;
} PolicyParam;

/* Parameters several policies take, declared alike everywhere. */
#define PARAM_RECENT(def) {"recent", PARAM_REAL, def, 0, 1, 0, NULL, "protected recent window, a fraction of the budget", SHRINK_NEVER}
#define PARAM_SINK(def) {"sink", PARAM_COUNT, def, 0, 1 << 30, 0, NULL, "first tokens never evicted", SHRINK_SINK}
#define PARAM_ALPHA(def) {"alpha", PARAM_REAL, def, 0, 1, 1, NULL, "forgetting factor: score <- alpha*score + row", SHRINK_NEVER}

typedef struct {
    double number;                     /* REAL, COUNT, CHOICE (index of the word) */
    int n_layers;                      /* LAYERS */
    int layers[POLICY_MAX_LIST];
} ParamValue;

/* Parsed "name:key=value,...": every parameter of the policy, defaults applied. */
typedef struct {
    char name[16];
    ParamValue value[POLICY_MAX_PARAMS]; /* [i]: the i-th parameter of the policy's table */
    char canonical[160];    /* "alpha=0.2,recent=0": every parameter, as used */
    unsigned given;         /* bit i: the i-th parameter was given by the user */
} PolicySpec;

/* Per-token features of one cache unit, known when the token enters. */
typedef struct {
    float k_norm;   /* ‖k‖₂ */
    float v_l1;     /* ‖v‖₁ */
} TokenFeatures;

/* The unit's group-summed full attention Σ_{h in unit} a_t^h(i), for
 * hindsight oracles: read(ctx, t0, n, out, ld) fills rows t0..t0+n-1 of it
 * (columns 0..t of row t, row stride ld).  Rows are computed on demand, a
 * block at a time, so an oracle can read any rows, any number of times,
 * without the T×T matrix ever existing. */
typedef struct {
    int T;        /* rows (tokens) */
    int block;    /* rows the source computes at once: read at least this many */
    void *ctx;
    int (*read)(void *ctx, int t0, int n, float *out, long ld, KvError *err);
} AttentionRows;

typedef enum {
    KIND_ORDER,   /* victim by position alone (window, streaming) */
    KIND_SCAN,    /* scores change every row; victim by a scan of [lo, hi) */
    KIND_STATIC,  /* a score fixed when the token enters; victim from a heap */
    KIND_FULL,    /* never evicts */
    KIND_IDEAL,   /* per-row top-B oracle: not a cache, handled by the replay */
    KIND_SELECT,  /* keeps everything; each row attends to the tokens `select` picks from q_t */
} PolicyKind;

/* What a query-aware selector sees at row t: the unit's queries q_t and the
 * keys of tokens 0..t that each query head attends to. */
typedef struct {
    int n_heads, d;
    float scale;              /* the logits' 1/sqrt(d) */
    const float *const *q;    /* [n_heads] -> q_t (d floats) */
    const float *const *k;    /* [n_heads] -> key of token i at k[h] + i * d */
} QueryView;

typedef struct Policy Policy;

typedef struct {
    const char *name;
    const PolicyParam *params; /* its parameters, in the order of the canonical string */
    int n_params;
    const char *cost;       /* cost per step, for the documentation and --list */
    PolicyKind kind;
    int uses_attention;     /* needs observed rows (else observe is skipped) */
    int needs_hindsight;    /* oracle that needs the whole trace (optimal) */
    int uses_value_norm;    /* keeps ‖v‖₁ per held token in aux (vatp) */
    int uses_slot_sums;     /* keeps a double per held token in sums, 0 when it enters (snapkv) */
    int comparable_scores;  /* scores are attention mass, comparable across units (adaptive allocation) */
    /* checks a parsed spec beyond each parameter's bounds (NULL: nothing more) */
    int (*check)(const PolicySpec *spec, KvError *err);
    /* resolves protection (sink, recent) and allocates private state */
    int (*init)(Policy *p, KvError *err);
    void (*destroy)(Policy *p);
    /* KIND_SCAN: initial score of a new token; KIND_STATIC: its fixed score */
    float (*enter_score)(Policy *p, int token, const TokenFeatures *f);
    void (*observe)(Policy *p, const float *r, int t);
    /* instead of observe: r[j] = g[j] * factor (a float product), read in the
     * same pass that updates the scores (a one-head unit's row is never
     * scaled on its own) */
    void (*observe_scaled)(Policy *p, const float *g, float factor, int t);
    /* returns the slot in [lo, hi) to evict; NULL = lowest score, oldest on ties */
    int (*victim)(Policy *p, int lo, int hi, int t);
    /* told just before a slot leaves the cache (NULL: not told) */
    void (*removed)(Policy *p, int slot);
    /* the score victim() ranked slot by, just after it ran; NULL = score[slot] * scale */
    float (*victim_score)(const Policy *p, int slot);
    /* KIND_SELECT: writes the tokens row t attends to (increasing) and returns how many */
    int (*select)(Policy *p, const QueryView *view, int t, int *tokens);
    /* hindsight oracles: sees the whole unit's attention before the replay */
    int (*prepare)(Policy *p, const AttentionRows *rows, int first_step, KvError *err);
    /* policies whose cost grows faster than T·B: CPU seconds for one unit of
     * T tokens at budget B, so a long run can be announced (NULL: cheap) */
    double (*estimate_seconds)(int T, int budget);
    /* policies whose memory grows faster than T·B: bytes one unit of T tokens
     * takes at budget B, first counted step S, so a run that cannot fit is
     * refused before it starts (NULL: small) */
    size_t (*estimate_bytes)(int T, int budget, int first_step);
} PolicyOps;

struct Policy {
    const PolicyOps *ops;
    PolicySpec spec;
    int budget;          /* B: most tokens held */
    int capacity;        /* most tokens ever inserted (sequence length) */
    int sink, recent;    /* protection, in tokens */
    int layer, unit;     /* which cache unit (random seeds, knorm skip) */
    /* the cache */
    int n;
    int *tokens;         /* [capacity] positions held, increasing */
    float *score;        /* [capacity] per slot: lowest goes first */
    float *aux;          /* [capacity] per slot ‖v‖₁, for policies that use it (else NULL) */
    double *sums;        /* [capacity] per slot, for policies with uses_slot_sums (else NULL) */
    int shift;           /* slots tokens, score, aux and sums start after their allocations (policy_remove) */
    /* KIND_SCAN with decay: true score = score * scale */
    double scale;
    /* KIND_STATIC */
    float *token_score;  /* [capacity] fixed score by position */
    int *heap;           /* [capacity] token positions, min-heap on (token_score, position) */
    int heap_n, next_unprotected;
    void *priv;
};

/* Parses "name[:key=value,...]" with the policy's defaults applied. */
int policy_parse(const char *text, PolicySpec *spec, KvError *err);
/* "key=default,key=default" of a policy ("-" when it takes none). */
void policy_defaults_text(const PolicyOps *ops, char *out, size_t size);
/* Every policy, its cost and each parameter's type, bounds, default and help. */
void policy_print_list(FILE *out);
/* A parsed parameter of p, by its index in the policy's table. */
static inline double policy_param(const Policy *p, int index) { return p->spec.value[index].number; }
const PolicyOps *policy_lookup(const char *name);
/* NULL-terminated list of every registered policy. */
const PolicyOps *const *policy_registry(void);

/* Defaults that leave no room to evict at a small budget shrink to fit, as
 * each parameter's `shrink` says: a `window` the user did not give becomes
 * max(1, B/2), a `sink` at most (B - recent)/2.  Parameters the user gave
 * never change.
 * Returns 1 and writes what changed into note when it changed *spec, 0 when
 * spec already fits or nothing would make it fit (policy_create says why). */
int policy_fit_budget(PolicySpec *spec, int budget, int capacity, char *note, size_t note_size);

/* Budget B and capacity (the longest sequence); layer/unit identify the unit. */
int policy_create(Policy *p, const PolicySpec *spec, int budget, int capacity, int layer, int unit, KvError *err);
void policy_destroy(Policy *p);
void policy_insert(Policy *p, int token, const TokenFeatures *f);
/* Evicts one token at step t and returns its position (-1 if none can go). */
int policy_evict(Policy *p, int t);
/* The slot policy_evict would take at step t (-1 if none can go) and, for
 * a KIND_SCAN policy, its score (policies with comparable_scores: the same
 * scale in every unit); policy_remove then takes it. */
int policy_candidate(Policy *p, int t, float *score);
int policy_remove(Policy *p, int slot);
/* r[j] is the observed attention (group sum) of tokens[j], j < n. */
void policy_observe(Policy *p, const float *r, int t);
/* The same with r[j] = g[j] * factor: policies with observe_scaled read g
 * directly; for the others r is written into scratch (which may be g). */
void policy_observe_scaled(Policy *p, const float *g, float factor, float *scratch, int t);
/* Slot of a held token, or -1. */
int policy_find(const Policy *p, int token);
/* Held tokens below token: the slot it has or would have. */
int policy_slots_below(const Policy *p, int token);

/* Helpers shared by policies. */
/* a2sf's update with r[j] = g[j] * factor, weighted by weight[j] (or not, NULL). */
void a2sf_decayed_add(Policy *p, double alpha, const float *g, float factor, const float *weight);

/* Recent-window tokens for a budget: floor(recent * B + 0.5). */
int policy_recent_tokens(double recent, int budget);
/* Refuses protection that leaves no room to evict (sink + recent >= B). */
int policy_check_room(const Policy *p, KvError *err);

#endif
