/* a2sf (Jo & Shin 2024): score <- alpha*score + r_t, so old contributions
 * fade and tokens of different ages compete fairly.
 *
 * The decay is a running scale: stored = score / scale with scale = alpha^t,
 * so a step adds r/scale to each held token instead of multiplying every
 * score.  When the scale nears underflow the stored scores are multiplied
 * through and the scale reset.  The victim order is unchanged by the common
 * positive factor.  Cost per step: O(B) add, O(B) scan. */
#include <stddef.h>

#include "policy.h"

#define RESCALE_BELOW 1e-30

enum { A2SF_ALPHA, A2SF_RECENT };
static const PolicyParam A2SF_PARAMS[] = {PARAM_ALPHA("0.2"), PARAM_RECENT("0")};

static int a2sf_init(Policy *p, KvError *err)
{
    (void)err;
    p->recent = policy_recent_tokens(policy_param(p, A2SF_RECENT), p->budget);
    return 0;
}

/* score[j] += r[j] * weight[j] * inv (weight NULL: 1), r[j] = g[j] * factor;
 * each product its own statement, never fused into the add. */
__attribute__((target_clones("avx2", "default")))
static void scaled_add(float *restrict score, const float *g, float factor, const float *weight, float inv, int n)
{
    if (weight)
        for (int j = 0; j < n; j++) {
            float r = g[j] * factor, term = r * weight[j] * inv;
            score[j] += term;
        }
    else
        for (int j = 0; j < n; j++) {
            float r = g[j] * factor, term = r * inv;
            score[j] += term;
        }
}

/* Shared with vatp (base=a2sf): adds weight[j]*r[j] under the decay. */
void a2sf_decayed_add(Policy *p, double alpha, const float *g, float factor, const float *weight)
{
    if (alpha == 0.0) { /* no memory: the score is the latest row */
        for (int j = 0; j < p->n; j++) {
            float r = g[j] * factor;
            p->score[j] = weight ? r * weight[j] : r;
        }
        return;
    }
    p->scale *= alpha;
    if (p->scale < RESCALE_BELOW) {
        for (int j = 0; j < p->n; j++) p->score[j] = (float)(p->score[j] * p->scale);
        p->scale = 1.0;
    }
    scaled_add(p->score, g, factor, weight, (float)(1.0 / p->scale), p->n);
}

static void a2sf_observe(Policy *p, const float *g, float factor, int t)
{
    (void)t;
    a2sf_decayed_add(p, policy_param(p, A2SF_ALPHA), g, factor, NULL);
}

const PolicyOps POLICY_A2SF = {
    .name = "a2sf", .params = A2SF_PARAMS, .n_params = 2, .cost = "O(B)", .kind = KIND_SCAN,
    .uses_attention = 1, .comparable_scores = 1, .init = a2sf_init, .observe_scaled = a2sf_observe,
};
