/* flow.h — exact minimum-cost flow on a DAG by successive shortest paths.
 *
 * Integral capacities, real (double) costs.  Initial node potentials come
 * from one pass in topological order (the network must be acyclic, which
 * lets costs be negative); each augmentation is then a Dijkstra on reduced
 * costs.  With k units to send it costs O(k · E log V).  Written for the
 * `optimal` oracle, where GLPK's out-of-kilter method (pseudo-polynomial in
 * the cost scale) was ~10⁴ times slower and its RELAX-IV is disabled in
 * Debian's build; tests check it against GLPK on small networks. */
#ifndef KV_FLOW_H
#define KV_FLOW_H

typedef struct {
    int n_nodes, n_arcs, cap_arcs;
    int *first;        /* [n_nodes] first arc out of the node, -1 = none */
    int *next;         /* [arcs] next arc out of the same tail */
    int *head;         /* [arcs] */
    int *residual;     /* [arcs] remaining capacity; arc a^1 is a's reverse */
    double *cost;      /* [arcs] */
} FlowGraph;

int flow_init(FlowGraph *g, int n_nodes, int max_arcs);
void flow_free(FlowGraph *g);
/* Adds u -> v; returns the arc id (its flow is read with flow_of). */
int flow_add_arc(FlowGraph *g, int u, int v, int capacity, double cost);
/* Sends `amount` units from source to sink at minimum total cost.
 * Returns 0, or -1 if the network is cyclic or cannot carry the amount. */
int flow_min_cost(FlowGraph *g, int source, int sink, int amount, double *total_cost);
int flow_of(const FlowGraph *g, int arc);

#endif
