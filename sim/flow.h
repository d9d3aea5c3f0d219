/* flow.h — the hindsight-optimal eviction schedule, exactly.
 *
 * The problem (docs/semantics.md, `optimal`): B cache slots, tokens entering at their
 * step (prompt tokens at the first counted step S in prefill mode), each
 * leaving once; maximise the attention retained over rows S..T-1.  Holding
 * a token never costs anything, so an optimal schedule evicts only when the
 * cache is over budget: d_t tokens at step t (d_S = S + 1 - B in prefill,
 * then one per step once the cache is full).  What remains is an assignment
 * of those evictions to distinct earlier tokens, evicting token i at step t
 * losing L_i(t) = Σ_{s >= t} w_s(i) (w = the unit's group-summed attention):
 * the min-cost flow of the time line (evictions) into the tokens, whose arcs
 * form a staircase (step t may take any token i < t).
 *
 * Solved by successive shortest paths with potentials (Jonker-Volgenant /
 * Crouse's dense shortest augmenting path): one augmentation per eviction,
 * in time order, each a Dijkstra over the tokens seen so far, whose scans
 * are branch-free and vectorise.  The costs are read from the rows once,
 * backwards, into the staircase: T^2/2 doubles (67 MB at 4096 tokens; no
 * T x T float matrix and no graph, which took 2 GB there).  Time is about
 * T^2 B / 2 cheap operations: a 4096-token unit in seconds.  Exact on the
 * double costs: the final duals are a certificate (ScheduleStats), which the
 * tests check arc by arc, beside GLPK and a brute force.  (An optimal
 * schedule is unique only up to tokens of negligible remaining attention:
 * two exact solvers may order those differently, with the same mass.) */
#ifndef KV_FLOW_H
#define KV_FLOW_H

#include "../util/error.h"
#include "policy.h"

typedef struct {
    double lost;      /* Σ L_i(t) over the evictions: attention the schedule loses */
    double dual;      /* the dual objective; equals lost at the optimum */
    long scanned;     /* steps scanned by the shortest-path searches, in total */
    double *step_dual, *token_dual; /* [T] each, or NULL: filled with the duals u_t (the largest of a
                                       step's evictions; -inf where none) and v_i, for a certificate */
} ScheduleStats;

/* leave[i] = the step at which token i leaves (S for prompt tokens dropped at
 * the prefill compression, T for tokens never evicted). */
int schedule_optimal(const AttentionRows *rows, int first_step, int budget, int *leave, ScheduleStats *stats,
                     KvError *err);

/* The memory schedule_optimal takes for a unit of T tokens (the staircase
 * and its duals: about 4 T^2 bytes when B is small), so a run can be
 * refused before it starts rather than run out of memory midway. */
size_t schedule_memory_bytes(int T, int first_step, int budget);

#endif
