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

static void vatp_observe(Policy *p, const float *r, int t)
{
    (void)t;
    if (policy_param(p, VATP_BASE) == BASE_A2SF) {
        a2sf_decayed_add(p, policy_param(p, VATP_ALPHA), r, 1.0f, p->aux);
        return;
    }
    for (int j = 0; j < p->n; j++) p->score[j] += r[j] * p->aux[j]; /* aux = ‖v‖₁ */
}

const PolicyOps POLICY_VATP = {
    .name = "vatp", .params = VATP_PARAMS, .n_params = 4,
    .cost = "O(B)", .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1, .uses_value_norm = 1, .init = vatp_init, .observe = vatp_observe,
};
