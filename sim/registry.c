/* The registry: every policy kvtrace knows, by name. */
#include <string.h>

#include "policy.h"

extern const PolicyOps POLICY_FULL, POLICY_WINDOW, POLICY_STREAMING, POLICY_H2O, POLICY_A2SF, POLICY_VATP,
    POLICY_KNORM, POLICY_TOVA, POLICY_SNAPKV, POLICY_RANDOM, POLICY_IDEAL, POLICY_OPTIMAL,
    POLICY_SCISSORHANDS, POLICY_QUEST;

static const PolicyOps *const REGISTRY[] = {
    &POLICY_FULL, &POLICY_WINDOW, &POLICY_STREAMING, &POLICY_H2O, &POLICY_A2SF, &POLICY_VATP,
    &POLICY_KNORM, &POLICY_TOVA, &POLICY_SNAPKV, &POLICY_RANDOM, &POLICY_IDEAL, &POLICY_OPTIMAL,
    &POLICY_SCISSORHANDS, &POLICY_QUEST, NULL,
};

const PolicyOps *const *policy_registry(void) { return REGISTRY; }

const PolicyOps *policy_lookup(const char *name)
{
    for (const PolicyOps *const *o = REGISTRY; *o; o++)
        if (!strcmp((*o)->name, name)) return *o;
    return NULL;
}
