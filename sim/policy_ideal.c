/* ideal: for each row separately, the B tokens of highest attention (group
 * sum over the unit's heads).  Not a real cache — evicted tokens come back —
 * it is the A2SF paper's "Ideal" upper bound.  The replay computes it per row
 * (O(t) selection); as a Policy it holds nothing. */
#include "policy.h"

const PolicyOps POLICY_IDEAL = {
    .name = "ideal", .cost = "O(t) selection per row", .kind = KIND_IDEAL,
    .uses_attention = 1,
};
