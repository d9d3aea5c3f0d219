/* vatp (Guo et al. 2024): score = accumulated attention x ‖v‖₁.  The base
 * accumulation is h2o's sum or a2sf's decayed sum; weighting each row's
 * contribution by the token's (fixed) value norm equals weighting the sum.
 * Attention sinks have tiny value norms, so the first `sink` tokens are
 * protected outright.  Cost per step: O(B) add, O(B) scan. */
#include "policy.h"

enum { VATP_BASE, VATP_ALPHA, VATP_RECENT, VATP_SINK };
enum { BASE_H2O, BASE_A2SF };
static const PolicyParam VATP_PARAMS[] = {
    {"base", PARAM_CHOICE, "h2o", 0, 0, 0, "h2o|a2sf", "accumulation: h2o's sum or a2sf's decayed sum",
     SHRINK_NEVER},
    PARAM_ALPHA("0.2"),
    PARAM_RECENT("0.5"),
    PARAM_SINK("4"),
};

static int vatp_init(Policy *p, KvError *err)
{
    (void)err;
    p->recent = policy_recent_tokens(policy_param(p, VATP_RECENT), p->budget);
    p->sink = (int)policy_param(p, VATP_SINK);
    return 0;
}

/* score[j] += r[j] * aux[j] with r[j] = g[j] * factor (aux = ‖v‖₁), each
 * product its own statement, never fused into the add. */
__attribute__((target_clones("avx2", "default")))
static void weighted_add(float *restrict score, const float *g, float factor, const float *aux, int n)
{
    for (int j = 0; j < n; j++) {
        float r = g[j] * factor, term = r * aux[j];
        score[j] += term;
    }
}

static void vatp_observe(Policy *p, const float *g, float factor, int t)
{
    (void)t;
    if (policy_param(p, VATP_BASE) == BASE_A2SF) a2sf_decayed_add(p, policy_param(p, VATP_ALPHA), g, factor, p->aux);
    else weighted_add(p->score, g, factor, p->aux, p->n);
}

const PolicyOps POLICY_VATP = {
    .name = "vatp", .params = VATP_PARAMS, .n_params = 4,
    .cost = "O(B)", .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1, .uses_value_norm = 1, .init = vatp_init,
    .observe_scaled = vatp_observe,
};
