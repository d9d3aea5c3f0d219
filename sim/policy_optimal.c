/* optimal: the best permanent-eviction schedule in hindsight — for each token
 * the step at which it leaves, such that the total retained attention
 * Σ_t Σ_{h in unit} m_t^h is maximal with |C_t| <= B.  No real policy can
 * beat it (every real schedule is feasible for it); `ideal` bounds it above.
 *
 * It is a min-cost flow, solved exactly with integral flows (flow.h):
 * B slots flow along time nodes τ_S..τ_T; token i occupies a slot on a chain
 * of nodes n(i,s), one per step it stays, entering at step max(i, S) and
 * leaving to the time chain after any step.  Staying through step s costs
 * -w_s(i), the group-summed attention of row s on token i.  Tokens that
 * arrive while decoding must enter (the replay protects token t at its own
 * step): their entry arcs carry a bonus M larger than all weights together,
 * so a minimum-cost flow takes every one of them; prompt tokens may be
 * dropped at the prefill compression (S = P), or are forced too (S = 0).
 *
 * The replay then evicts, whenever over budget, the token that leaves
 * earliest in the schedule: it holds a superset of the schedule's tokens at
 * every step, so it retains exactly the optimal mass.
 * Cost: O(T^2) nodes and arcs and B shortest-path searches per unit (meant
 * for traces of up to a few thousand tokens); O(log B) per replay step. */
#include <math.h>
#include <stdlib.h>

#include "flow.h"
#include "policy.h"

typedef struct {
    float *leave; /* [capacity] step after the token's last step in the cache */
} OptimalState;

static int optimal_init(Policy *p, KvError *err)
{
    OptimalState *s = calloc(1, sizeof *s);
    if (s) s->leave = calloc((size_t)p->capacity + 1, sizeof *s->leave);
    p->priv = s;
    if (!s || !s->leave) return kv_fail(err, "out of memory for the optimal schedule");
    return 0;
}

static void optimal_destroy(Policy *p)
{
    OptimalState *s = p->priv;
    if (s) free(s->leave);
    free(s);
    p->priv = NULL;
}

/* Node numbering: time nodes 0..T-S for steps S..T, then each token's chain. */
static int build_network(FlowGraph *g, const Policy *p, const float *rows, long ld, int T, int S, long *base,
                         int *entry, int *stay)
{
    long nodes = T - S + 1, arcs = T - S;
    for (int i = 0; i < T; i++) {
        int e = i > S ? i : S;
        base[i] = nodes;
        nodes += T - e;
        arcs += 1 + 2L * (T - e);
    }
    if (nodes > 1L << 30 || arcs > 1L << 29 || flow_init(g, (int)nodes, (int)arcs)) return -1;
    double bonus = 1.0; /* M: more than every weight together */
    for (int t = S; t < T; t++)
        for (int i = 0; i <= t; i++) bonus += rows[(long)t * ld + i];
    for (int s = S; s < T; s++) flow_add_arc(g, s - S, s + 1 - S, p->budget, 0.0);
    for (int i = 0; i < T; i++) {
        int e = i > S ? i : S;
        entry[i] = flow_add_arc(g, e - S, (int)base[i], 1, -rows[(long)e * ld + i] - (i >= S ? bonus : 0.0));
        for (int s = e; s < T; s++) {
            int node = (int)(base[i] + s - e);
            flow_add_arc(g, node, s + 1 - S, 1, 0.0); /* leave after step s */
            stay[node] = s + 1 < T ? flow_add_arc(g, node, node + 1, 1, -rows[(long)(s + 1) * ld + i]) : -1;
        }
    }
    return 0;
}

static int optimal_prepare(Policy *p, const float *rows, long ld, int T, int first_step, KvError *err)
{
    OptimalState *st = p->priv;
    int S = first_step;
    long nodes_max = (long)T * (T + 1) / 2 + T + 2;
    long *base = malloc((size_t)T * sizeof *base);
    int *entry = malloc((size_t)T * sizeof *entry), *stay = malloc((size_t)nodes_max * sizeof *stay);
    FlowGraph g = {0};
    int rc = !base || !entry || !stay || build_network(&g, p, rows, ld, T, S, base, entry, stay) ? -2 : 0;
    if (rc == 0) rc = flow_min_cost(&g, 0, T - S, p->budget, NULL);
    for (int i = 0; i < T && rc == 0; i++) { /* follow each token's chain to its last step */
        int e = i > S ? i : S, last = e - 1;
        if (flow_of(&g, entry[i]))
            for (last = e; last + 1 < T && flow_of(&g, stay[base[i] + last - e]); last++) {}
        else if (i >= S)
            rc = -1; /* a decoding token left out: cannot happen with B >= 1 */
        st->leave[i] = (float)(last + 1);
    }
    flow_free(&g);
    free(base); free(entry); free(stay);
    if (rc == -2) return kv_fail(err, "out of memory for the optimal schedule's %d-token network", T);
    if (rc) return kv_fail(err, "the optimal schedule's flow problem has no solution (budget %d, %d tokens)", p->budget, T);
    return 0;
}

static float optimal_score(Policy *p, int token, const TokenFeatures *f)
{
    (void)f;
    return ((OptimalState *)p->priv)->leave[token]; /* earliest leaver goes first */
}

const PolicyOps POLICY_OPTIMAL = {
    .name = "optimal", .defaults = "", .keys = "", .cost = "O(B T^2 log T) once, O(log B) per step",
    .kind = KIND_STATIC, .uses_attention = 1, .needs_hindsight = 1, .init = optimal_init,
    .destroy = optimal_destroy, .prepare = optimal_prepare, .enter_score = optimal_score,
};
