/* quest (Tang et al. 2024, query-aware sparsity): not an eviction policy —
 * the cache keeps every token, and each query attends only to the pages
 * (position blocks [p*page, (p+1)*page)) most likely to matter to it.  A
 * page's upper bound on q·k for the unit is
 *     Σ_{h in unit} Σ_d max(q_h,d * kmin_d, q_h,d * kmax_d)
 * (kmin, kmax: the element-wise min and max of the keys head h attends to
 * over the page's tokens <= t; q scaled like the logits, by 1/sqrt(d)).
 * Row t attends to floor(B/page) pages: the page holding t, always, and the
 * others of highest bound (ties: the newer page).  Every query head of the
 * unit attends over the union of their tokens.  It reports the same metrics
 * as the evicting policies and is a non-permanent comparator beside ideal.
 *
 * max(q*kmin, q*kmax) = max over the page's tokens of q*k (q*x is monotone
 * in x, and so is its rounding), which is how it is computed: one pass over
 * the page's keys per dimension, with no per-page state to keep.
 * Cost per row: O(t * d * G) (the cost of the logits), plus a selection
 * over t/page pages. */
#include <math.h>
#include <stdlib.h>

#include "../util/select.h"
#include "policy.h"

enum { QUEST_PAGE };
static const PolicyParam QUEST_PARAMS[] = {
    {"page", PARAM_COUNT, "16", 1, 1 << 30, 0, NULL, "tokens per page; B >= page", SHRINK_HALF_BUDGET},
};

typedef struct {
    float *bound;         /* [pages] upper bound of each page, newest first */
    float *scratch;       /* [pages] for the selection */
    unsigned char *chosen; /* [pages] newest first */
} QuestState;

static int quest_init(Policy *p, KvError *err)
{
    int page = (int)policy_param(p, QUEST_PAGE);
    if (p->budget < page && p->budget < p->capacity)
        return kv_fail(err, "quest:page=%d at budget %d: a budget attends to floor(B/page) pages, so it needs "
                       "B >= page", page, p->budget);
    size_t pages = (size_t)p->capacity / page + 1;
    QuestState *s = calloc(1, sizeof *s);
    p->priv = s;
    if (s) {
        s->bound = malloc(pages * sizeof *s->bound);
        s->scratch = malloc(pages * sizeof *s->scratch);
        s->chosen = malloc(pages);
    }
    if (!s || !s->bound || !s->scratch || !s->chosen) return kv_fail(err, "out of memory for quest's %zu pages", pages);
    return 0;
}

static void quest_destroy(Policy *p)
{
    QuestState *s = p->priv;
    if (!s) return;
    free(s->bound);
    free(s->scratch);
    free(s->chosen);
    free(s);
    p->priv = NULL;
}

/* The upper bound of the page of tokens first..last for the unit's queries
 * (not static: tests check it against the true maximum of q·k). */
float quest_page_bound(const QueryView *v, int first, int last);
float quest_page_bound(const QueryView *v, int first, int last)
{
    double bound = 0;
    for (int h = 0; h < v->n_heads; h++)
        for (int c = 0; c < v->d; c++) {
            float q = v->q[h][c] * v->scale, best = q * v->k[h][(size_t)first * v->d + c];
            for (int i = first + 1; i <= last; i++) {
                float x = q * v->k[h][(size_t)i * v->d + c];
                best = x > best ? x : best;
            }
            bound += best;
        }
    return (float)bound;
}

static int quest_select(Policy *p, const QueryView *v, int t, int *tokens)
{
    QuestState *s = p->priv;
    int page = (int)policy_param(p, QUEST_PAGE), current = t / page, pages = current + 1;
    int want = p->budget / page > 1 ? p->budget / page : 1;
    for (int j = 0; j < pages; j++) s->chosen[j] = 1;
    if (pages > want) { /* the current page (index 0, newest first), and want-1 of the others */
        for (int j = 1; j < pages; j++) {
            int first = (current - j) * page;
            s->bound[j - 1] = quest_page_bound(v, first, first + page - 1);
        }
        top_k_flags(s->bound, pages - 1, want - 1, s->scratch, s->chosen + 1); /* ties: lowest index = newer */
    }
    int n = 0;
    for (int pg = 0; pg <= current; pg++)
        if (s->chosen[current - pg])
            for (int i = pg * page; i < (pg + 1) * page && i <= t; i++) tokens[n++] = i;
    return n;
}

const PolicyOps POLICY_QUEST = {
    .name = "quest", .params = QUEST_PARAMS, .n_params = 1, .cost = "O(t*d) bounds and a selection per row",
    .kind = KIND_SELECT, .init = quest_init, .destroy = quest_destroy, .select = quest_select,
};
