/* The machinery every policy shares: parameters, the held-token view, the
 * victim scan and the static-score heap.  Policies supply only scores. */
#include "policy.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ parameters */

/* Index of key in the policy's parameter table, or -1. */
static int key_index(const PolicyOps *ops, const char *key)
{
    for (int i = 0; i < ops->n_params; i++)
        if (!strcmp(ops->params[i].key, key)) return i;
    return -1;
}

static void key_list(const PolicyOps *ops, char *out, size_t size)
{
    size_t used = 0;
    snprintf(out, size, "none");
    for (int i = 0; i < ops->n_params && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? "," : "", ops->params[i].key);
}

/* Index of word in "word|word", or -1. */
static int choice_index(const char *choices, const char *word)
{
    size_t len = strlen(word);
    int index = 0;
    for (const char *c = choices; *c; index++) {
        const char *end = strchr(c, '|');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == len && !strncmp(c, word, n)) return index;
        c = end ? end + 1 : c + n;
    }
    return -1;
}

/* The index-th word of "word|word" into out. */
static void choice_word(const char *choices, int index, char *out, size_t size)
{
    const char *c = choices;
    for (; index > 0 && strchr(c, '|'); index--) c = strchr(c, '|') + 1;
    const char *end = strchr(c, '|');
    snprintf(out, size, "%.*s", (int)(end ? (size_t)(end - c) : strlen(c)), c);
}

/* "0+1+5": layer numbers, or "none". */
static int parse_layers(const char *policy, const PolicyParam *param, const char *value, ParamValue *out, KvError *err)
{
    out->n_layers = 0;
    if (!strcmp(value, "none")) return 0;
    char *buf = strdup(value), *save = NULL, *end;
    if (!buf) return kv_fail(err, "out of memory");
    int bad = 0;
    for (char *tok = strtok_r(buf, "+", &save); tok && !bad; tok = strtok_r(NULL, "+", &save)) {
        long layer = strtol(tok, &end, 10);
        bad = *end || layer < 0 || layer > 1 << 20 || out->n_layers == POLICY_MAX_LIST;
        if (!bad) out->layers[out->n_layers++] = (int)layer;
    }
    free(buf);
    if (bad) return kv_fail(err, "%s: %s must list up to %d layers joined by '+', got '%s'", policy, param->key,
                            POLICY_MAX_LIST, value);
    return 0;
}

/* One value of one parameter, checked against its type and bounds. */
static int parse_value(const char *policy, const PolicyParam *param, const char *value, ParamValue *out, KvError *err)
{
    char *end;
    double v = strtod(value, &end);
    int numeric = *value && !*end && isfinite(v);
    switch (param->type) {
    case PARAM_REAL:
        if (!numeric || v < param->min || v > param->max || (param->open_max && v == param->max))
            return kv_fail(err, "%s: %s must be in [%g, %g%c, got '%s'", policy, param->key, param->min, param->max,
                           param->open_max ? ')' : ']', value);
        break;
    case PARAM_COUNT:
        if (!numeric || v < param->min || v != floor(v) || v > param->max)
            return kv_fail(err, "%s: %s must be a whole number in %.0f..%.0f, got '%s'", policy, param->key,
                           param->min, param->max, value);
        break;
    case PARAM_CHOICE:
        v = choice_index(param->choices, value);
        if (v < 0) return kv_fail(err, "%s: %s must be one of %s, got '%s'", policy, param->key, param->choices, value);
        break;
    case PARAM_LAYERS:
        return parse_layers(policy, param, value, out, err);
    }
    out->number = v;
    return 0;
}

/* Applies "key=value,key=value" to s; marks the keys as given when the user wrote them. */
static int apply_params(PolicySpec *s, const PolicyOps *ops, const char *text, int user, KvError *err)
{
    char buf[512], keys[128];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) return kv_fail(err, "policy %s: parameter '%s' needs key=value", ops->name, item);
        *eq = 0;
        int i = key_index(ops, item);
        key_list(ops, keys, sizeof keys);
        if (i < 0) return kv_fail(err, "policy %s has no parameter '%s' (it takes: %s)", ops->name, item, keys);
        if (parse_value(ops->name, &ops->params[i], eq + 1, &s->value[i], err)) return -1;
        if (user) s->given |= 1u << i;
    }
    return 0;
}

static void value_text(const PolicyParam *param, const ParamValue *v, char *out, size_t size)
{
    size_t n = 0;
    switch (param->type) {
    case PARAM_REAL: snprintf(out, size, "%g", v->number); break;
    case PARAM_COUNT: snprintf(out, size, "%.0f", v->number); break;
    case PARAM_CHOICE: choice_word(param->choices, (int)v->number, out, size); break;
    case PARAM_LAYERS:
        snprintf(out, size, "none");
        for (int i = 0; i < v->n_layers && n + 8 < size; i++)
            n += (size_t)snprintf(out + n, size - n, "%s%d", i ? "+" : "", v->layers[i]);
        break;
    }
}

static void canonical(PolicySpec *s, const PolicyOps *ops)
{
    size_t used = 0;
    s->canonical[0] = 0;
    for (int i = 0; i < ops->n_params && used < sizeof s->canonical; i++) {
        char v[96];
        value_text(&ops->params[i], &s->value[i], v, sizeof v);
        used += (size_t)snprintf(s->canonical + used, sizeof s->canonical - used, "%s%s=%s", used ? "," : "",
                                 ops->params[i].key, v);
    }
}

void policy_defaults_text(const PolicyOps *ops, char *out, size_t size)
{
    size_t used = 0;
    snprintf(out, size, "-");
    for (int i = 0; i < ops->n_params && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s=%s", i ? "," : "", ops->params[i].key,
                                 ops->params[i].fallback);
}

static void param_range(const PolicyParam *param, char *out, size_t size)
{
    switch (param->type) {
    case PARAM_REAL:
        snprintf(out, size, "number in [%g, %g%c", param->min, param->max, param->open_max ? ')' : ']');
        break;
    case PARAM_COUNT: snprintf(out, size, "whole number in %.0f..%.0f", param->min, param->max); break;
    case PARAM_CHOICE: snprintf(out, size, "one of %s", param->choices); break;
    case PARAM_LAYERS: snprintf(out, size, "layers joined by '+', or none"); break;
    }
}

void policy_print_list(FILE *out)
{
    for (const PolicyOps *const *o = policy_registry(); *o; o++) {
        fprintf(out, "%s (cost per step: %s)\n", (*o)->name, (*o)->cost);
        if (!(*o)->n_params) fprintf(out, "  no parameters\n");
        for (int i = 0; i < (*o)->n_params; i++) {
            const PolicyParam *param = &(*o)->params[i];
            char range[96];
            param_range(param, range, sizeof range);
            fprintf(out, "  %-7s default %-5s %-32s %s\n", param->key, param->fallback, range, param->help);
        }
    }
}

int policy_parse(const char *text, PolicySpec *spec, KvError *err)
{
    memset(spec, 0, sizeof *spec);
    const char *colon = strchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : strlen(text);
    if (n == 0 || n >= sizeof spec->name) return kv_fail(err, "unknown policy '%s'", text);
    memcpy(spec->name, text, n);
    const PolicyOps *ops = policy_lookup(spec->name);
    if (!ops) {
        char names[256] = "";
        for (const PolicyOps *const *o = policy_registry(); *o; o++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *names ? ", " : "", (*o)->name);
        return kv_fail(err, "unknown policy '%s' (known: %s)", spec->name, names);
    }
    for (int i = 0; i < ops->n_params; i++) {
        char item[128];
        snprintf(item, sizeof item, "%s=%s", ops->params[i].key, ops->params[i].fallback);
        if (apply_params(spec, ops, item, 0, err)) return -1;
    }
    if (colon && apply_params(spec, ops, colon + 1, 1, err)) return -1;
    if (ops->check && ops->check(spec, err)) return -1;
    canonical(spec, ops);
    return 0;
}

/* ------------------------------------------------------------ static-score heap */

/* Order: lower score first, then the older token. */
static int heap_less(const Policy *p, int a, int b)
{
    float sa = p->token_score[a], sb = p->token_score[b];
    return sa < sb || (sa == sb && a < b);
}

static void heap_push(Policy *p, int token)
{
    int i = p->heap_n++;
    p->heap[i] = token;
    while (i > 0 && heap_less(p, p->heap[i], p->heap[(i - 1) / 2])) {
        int parent = (i - 1) / 2, tmp = p->heap[i];
        p->heap[i] = p->heap[parent];
        p->heap[parent] = tmp;
        i = parent;
    }
}

static int heap_pop(Policy *p)
{
    int top = p->heap[0];
    p->heap[0] = p->heap[--p->heap_n];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < p->heap_n && heap_less(p, p->heap[l], p->heap[m])) m = l;
        if (r < p->heap_n && heap_less(p, p->heap[r], p->heap[m])) m = r;
        if (m == i) break;
        int tmp = p->heap[i];
        p->heap[i] = p->heap[m];
        p->heap[m] = tmp;
        i = m;
    }
    return top;
}

/* ------------------------------------------------------------ the cache */

int policy_recent_tokens(double recent, int budget) { return (int)floor(recent * budget + 0.5); }

int policy_check_room(const Policy *p, KvError *err)
{
    PolicyKind kind = p->ops->kind;
    if (kind == KIND_FULL || kind == KIND_IDEAL || kind == KIND_SELECT || p->budget >= p->capacity) return 0;
    if (p->sink + p->recent >= p->budget)
        return kv_fail(err, "%s:%s at budget %d protects %d sink + %d recent tokens, leaving no room to evict "
                       "(need sink + recent < budget)", p->spec.name, p->spec.canonical, p->budget, p->sink,
                       p->recent);
    return 0;
}

static int fits(const PolicySpec *spec, int budget, int capacity)
{
    Policy probe;
    KvError ignored;
    if (policy_create(&probe, spec, budget, capacity, 0, 0, &ignored)) return 0;
    policy_destroy(&probe);
    return 1;
}

int policy_fit_budget(PolicySpec *spec, int budget, int capacity, char *note, size_t note_size)
{
    const PolicyOps *ops = policy_lookup(spec->name);
    if (!ops || fits(spec, budget, capacity)) return 0;
    PolicySpec fitted = *spec;
    int r = key_index(ops, "recent");
    int recent = r >= 0 ? policy_recent_tokens(spec->value[r].number, budget) : 0;
    for (int i = 0; i < ops->n_params; i++) {
        double *v = &fitted.value[i].number;
        if (spec->given & (1u << i)) continue;
        if (ops->params[i].shrink == SHRINK_HALF_BUDGET) *v = budget / 2 > 1 ? budget / 2 : 1;
        if (ops->params[i].shrink == SHRINK_SINK && *v > (budget - recent) / 2)
            *v = budget - recent > 0 ? (budget - recent) / 2 : 0;
    }
    canonical(&fitted, ops);
    if (!strcmp(fitted.canonical, spec->canonical) || !fits(&fitted, budget, capacity)) return 0;
    snprintf(note, note_size, "%s:%s leaves no room to evict at budget %d tokens; using %s:%s (defaults shrink "
             "to fit small budgets; give the parameter to choose it)", spec->name, spec->canonical, budget,
             fitted.name, fitted.canonical);
    *spec = fitted;
    return 1;
}

int policy_create(Policy *p, const PolicySpec *spec, int budget, int capacity, int layer, int unit, KvError *err)
{
    memset(p, 0, sizeof *p);
    p->ops = policy_lookup(spec->name);
    if (!p->ops) return kv_fail(err, "unknown policy '%s'", spec->name);
    p->spec = *spec;
    p->budget = p->ops->kind == KIND_FULL ? capacity : budget; /* full never evicts */
    p->capacity = capacity;
    p->layer = layer;
    p->unit = unit;
    p->scale = 1.0;
    size_t cap = (size_t)capacity + 1;
    p->tokens = malloc(cap * sizeof *p->tokens);
    p->score = calloc(cap, sizeof *p->score);
    if (p->ops->uses_value_norm) p->aux = calloc(cap, sizeof *p->aux);
    if (p->ops->uses_slot_sums) p->sums = calloc(cap, sizeof *p->sums);
    if (p->ops->kind == KIND_STATIC) {
        p->token_score = calloc(cap, sizeof *p->token_score);
        p->heap = malloc(cap * sizeof *p->heap);
    }
    if (!p->tokens || !p->score || (p->ops->uses_value_norm && !p->aux) ||
        (p->ops->uses_slot_sums && !p->sums) || (p->ops->kind == KIND_STATIC && (!p->token_score || !p->heap))) {
        policy_destroy(p);
        return kv_fail(err, "out of memory for a %d-token cache", capacity);
    }
    if ((p->ops->init && p->ops->init(p, err)) || policy_check_room(p, err)) {
        policy_destroy(p);
        return -1;
    }
    return 0;
}

void policy_destroy(Policy *p)
{
    if (p->ops && p->ops->destroy) p->ops->destroy(p);
    free(p->tokens ? p->tokens - p->shift : NULL);
    free(p->score ? p->score - p->shift : NULL);
    free(p->aux ? p->aux - p->shift : NULL);
    free(p->sums ? p->sums - p->shift : NULL);
    free(p->token_score);
    free(p->heap);
    memset(p, 0, sizeof *p);
}

void policy_insert(Policy *p, int token, const TokenFeatures *f)
{
    int slot = p->n++;
    p->tokens[slot] = token;
    p->score[slot] = 0.0f;
    if (p->aux) p->aux[slot] = f ? f->v_l1 : 0.0f;
    if (p->sums) p->sums[slot] = 0.0;
    if (p->ops->enter_score) {
        float s = p->ops->enter_score(p, token, f);
        if (p->ops->kind == KIND_STATIC) p->token_score[token] = s;
        else p->score[slot] = s;
    }
}

int policy_slots_below(const Policy *p, int token)
{
    int lo = 0, hi = p->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (p->tokens[mid] < token) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int policy_find(const Policy *p, int token)
{
    int slot = policy_slots_below(p, token);
    return slot < p->n && p->tokens[slot] == token ? slot : -1;
}

/* Moves n slots of every per-slot array from index `from` to `to`. */
static void move_slots(Policy *p, int from, int to, int n)
{
    memmove(p->tokens + to, p->tokens + from, (size_t)n * sizeof *p->tokens);
    memmove(p->score + to, p->score + from, (size_t)n * sizeof *p->score);
    if (p->aux) memmove(p->aux + to, p->aux + from, (size_t)n * sizeof *p->aux);
    if (p->sums) memmove(p->sums + to, p->sums + from, (size_t)n * sizeof *p->sums);
}

/* Closes the gap of a removed slot by moving the shorter side: the slots
 * after it down, or those before it up, the arrays' start following them
 * (shift).  Slots keep their order, so nothing else can tell which.  The
 * start moves once per removal at most, so shift + n never exceeds the
 * tokens inserted: the allocations (capacity + 1) always have room. */
static void remove_slot(Policy *p, int slot)
{
    if (p->ops->removed) p->ops->removed(p, slot);
    int before = slot, after = p->n - slot - 1;
    if (before < after) {
        move_slots(p, 0, 1, before);
        p->tokens++;
        p->score++;
        if (p->aux) p->aux++;
        if (p->sums) p->sums++;
        p->shift++;
    } else {
        move_slots(p, slot + 1, slot, after);
    }
    p->n--;
}

/* Unprotected slots: after the sink prefix, before the recent suffix (which
 * always holds token t).  Neither is ever evicted, so both are whole and
 * their lengths follow from t alone. */
static void unprotected_range(const Policy *p, int t, int *lo, int *hi)
{
    int recent = p->recent > 1 ? p->recent : 1;
    int first_recent = t - recent + 1 > 0 ? t - recent + 1 : 0;
    *lo = p->sink < t + 1 ? p->sink : t + 1;
    *hi = p->n - (t - first_recent + 1);
    if (first_recent < *lo) *hi = *lo; /* the windows overlap: nothing is free */
}

/* The lowest score in [lo, hi), the oldest slot on ties: one pass for the
 * least score, a second for its first slot (which stops there, on average
 * halfway), both on vectors: AVX-512 or AVX2 when the CPU has them and the
 * range is long, else the same two passes on scalars.  -0 and +0 tie, as
 * under <; NaN scores are passed over while a number is left (lo when none
 * is), on every path.  (Traces with non-finite attention are refused, so
 * NaN scores take a policy bug or a failing closed-loop model.) */
__attribute__((target("avx512f")))
static int lowest_score_avx512(const float *s, int lo, int hi)
{
    __m512 m0 = _mm512_set1_ps(INFINITY), m1 = m0;
    int j = lo;
    for (; j + 32 <= hi; j += 32) {
        m0 = _mm512_min_ps(_mm512_loadu_ps(s + j), m0);
        m1 = _mm512_min_ps(_mm512_loadu_ps(s + j + 16), m1);
    }
    float least = _mm512_reduce_min_ps(_mm512_min_ps(m0, m1));
    for (; j < hi; j++) least = s[j] < least ? s[j] : least;
    __m512 target = _mm512_set1_ps(least);
    for (j = lo; j + 16 <= hi; j += 16) {
        __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(s + j), target, _CMP_EQ_OQ);
        if (eq) return j + __builtin_ctz(eq);
    }
    for (; j < hi; j++)
        if (s[j] == least) return j;
    return lo;
}

__attribute__((target("avx2")))
static int lowest_score_avx2(const float *s, int lo, int hi)
{
    __m256 m0 = _mm256_set1_ps(INFINITY), m1 = m0;
    int j = lo;
    for (; j + 16 <= hi; j += 16) {
        m0 = _mm256_min_ps(_mm256_loadu_ps(s + j), m0);
        m1 = _mm256_min_ps(_mm256_loadu_ps(s + j + 8), m1);
    }
    float lane[8], least;
    _mm256_storeu_ps(lane, _mm256_min_ps(m0, m1));
    least = lane[0];
    for (int k = 1; k < 8; k++) least = lane[k] < least ? lane[k] : least;
    for (; j < hi; j++) least = s[j] < least ? s[j] : least;
    __m256 target = _mm256_set1_ps(least);
    for (j = lo; j + 8 <= hi; j += 8) {
        int eq = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + j), target, _CMP_EQ_OQ));
        if (eq) return j + __builtin_ctz((unsigned)eq);
    }
    for (; j < hi; j++)
        if (s[j] == least) return j;
    return lo;
}

static int lowest_score(const Policy *p, int lo, int hi)
{
    const float *s = p->score;
    if (hi - lo >= 32 && __builtin_cpu_supports("avx512f")) return lowest_score_avx512(s, lo, hi);
    if (hi - lo >= 32 && __builtin_cpu_supports("avx2")) return lowest_score_avx2(s, lo, hi);
    float least = INFINITY;
    for (int j = lo; j < hi; j++) least = s[j] < least ? s[j] : least;
    for (int j = lo; j < hi; j++)
        if (s[j] == least) return j;
    return lo;
}

/* Static scores: tokens join the heap as they leave protection. */
static int static_victim(Policy *p, int t)
{
    int recent = p->recent > 1 ? p->recent : 1;
    for (; p->next_unprotected <= t - recent; p->next_unprotected++)
        if (p->next_unprotected >= p->sink) heap_push(p, p->next_unprotected);
    return p->heap_n ? heap_pop(p) : -1;
}

int policy_candidate(Policy *p, int t, float *score)
{
    int lo, hi;
    unprotected_range(p, t, &lo, &hi);
    if (lo >= hi) return -1;
    int slot = p->ops->kind == KIND_ORDER ? lo : p->ops->victim ? p->ops->victim(p, lo, hi, t) : lowest_score(p, lo, hi);
    if (score) *score = p->ops->victim_score ? p->ops->victim_score(p, slot) : (float)(p->score[slot] * p->scale);
    return slot;
}

int policy_remove(Policy *p, int slot)
{
    int token = p->tokens[slot];
    remove_slot(p, slot);
    return token;
}

int policy_evict(Policy *p, int t)
{
    if (p->ops->kind == KIND_STATIC) {
        int token = static_victim(p, t), slot = token >= 0 ? policy_find(p, token) : -1;
        if (slot >= 0) remove_slot(p, slot);
        return slot >= 0 ? token : -1;
    }
    int slot = policy_candidate(p, t, NULL);
    return slot >= 0 ? policy_remove(p, slot) : -1;
}

void policy_observe(Policy *p, const float *r, int t)
{
    if (p->ops->observe_scaled) p->ops->observe_scaled(p, r, 1.0f, t); /* x * 1 == x */
    else if (p->ops->observe) p->ops->observe(p, r, t);
}

void policy_observe_scaled(Policy *p, const float *g, float factor, float *scratch, int t)
{
    if (p->ops->observe_scaled) {
        p->ops->observe_scaled(p, g, factor, t);
        return;
    }
    if (!p->ops->observe) return;
    if (g != scratch || factor != 1.0f) /* x * 1 == x: a row already scaled is observed as it is */
        for (int j = 0; j < p->n; j++) scratch[j] = g[j] * factor;
    p->ops->observe(p, scratch, t);
}
