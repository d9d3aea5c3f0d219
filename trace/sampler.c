#include "sampler.h"

#include <math.h>
#include <stdlib.h>

int sampler_init(Sampler *s, int vocab_size, float temperature, float top_p, uint64_t seed)
{
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng_state = seed ? seed : 0x9e3779b97f4a7c15ull;
    s->vocab_size = vocab_size;
    s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
    s->order = malloc((size_t)vocab_size * sizeof *s->order);
    if (!s->probs || !s->order) {
        sampler_free(s);
        return -1;
    }
    return 0;
}

void sampler_free(Sampler *s)
{
    free(s->probs);
    free(s->order);
    s->probs = NULL;
    s->order = NULL;
}

static float random_unit(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    uint32_t r = (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
    return (float)(r >> 8) / 16777216.0f;
}

int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

double token_nll(const float *logits, int n, int target)
{
    float max = logits[argmax(logits, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    return log(sum) - ((double)logits[target] - max);
}

static int by_prob_desc(const void *a, const void *b)
{
    const ProbId *x = a, *y = b;
    return x->prob < y->prob ? 1 : x->prob > y->prob ? -1 : x->id - y->id;
}

int sampler_next(Sampler *s, const float *logits)
{
    int n = s->vocab_size;
    if (s->temperature <= 0) return argmax(logits, n);
    float max = logits[argmax(logits, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s->probs[i] = expf((logits[i] - max) / s->temperature);
    for (int i = 0; i < n; i++) s->probs[i] = (float)(s->probs[i] / sum);
    float coin = random_unit(&s->rng_state);
    if (s->top_p <= 0 || s->top_p >= 1) {
        float cdf = 0;
        for (int i = 0; i < n; i++)
            if (coin < (cdf += s->probs[i])) return i;
        return n - 1;
    }
    /* nucleus: the smallest set of most likely tokens whose mass exceeds top_p */
    for (int i = 0; i < n; i++) s->order[i] = (ProbId){s->probs[i], i};
    qsort(s->order, (size_t)n, sizeof *s->order, by_prob_desc);
    float mass = 0;
    int last = n - 1;
    for (int i = 0; i < n; i++)
        if ((mass += s->order[i].prob) > s->top_p) { last = i; break; }
    float cdf = 0, r = coin * mass;
    for (int i = 0; i <= last; i++)
        if (r < (cdf += s->order[i].prob)) return s->order[i].id;
    return s->order[last].id;
}
