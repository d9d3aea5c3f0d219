/* sampler.h — choosing the next token from logits: greedy (temperature 0)
 * or temperature plus top-p (nucleus) sampling with a seeded xorshift RNG,
 * so a recording is reproducible from its seed. */
#ifndef KV_SAMPLER_H
#define KV_SAMPLER_H

#include <stdint.h>

typedef struct {
    float prob;
    int id;
} ProbId;

typedef struct {
    float temperature;
    float top_p;
    uint64_t rng_state;
    int vocab_size;
    float *probs;      /* [vocab] scratch */
    ProbId *order;     /* [vocab] scratch for top-p */
} Sampler;

int sampler_init(Sampler *s, int vocab_size, float temperature, float top_p, uint64_t seed);
void sampler_free(Sampler *s);
int sampler_next(Sampler *s, const float *logits);

/* Index of the largest value (the first on ties). */
int argmax(const float *x, int n);
/* -log softmax(logits)[target], in double precision. */
double token_nll(const float *logits, int n, int target);

#endif
