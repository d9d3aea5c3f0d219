#include "flow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int flow_init(FlowGraph *g, int n_nodes, int max_arcs)
{
    memset(g, 0, sizeof *g);
    g->n_nodes = n_nodes;
    g->cap_arcs = 2 * max_arcs;
    g->first = malloc((size_t)n_nodes * sizeof(int));
    g->next = malloc((size_t)g->cap_arcs * sizeof(int));
    g->head = malloc((size_t)g->cap_arcs * sizeof(int));
    g->residual = malloc((size_t)g->cap_arcs * sizeof(int));
    g->cost = malloc((size_t)g->cap_arcs * sizeof(double));
    if (!g->first || !g->next || !g->head || !g->residual || !g->cost) {
        flow_free(g);
        return -1;
    }
    memset(g->first, 0xff, (size_t)n_nodes * sizeof(int));
    return 0;
}

void flow_free(FlowGraph *g)
{
    free(g->first); free(g->next); free(g->head); free(g->residual); free(g->cost);
    memset(g, 0, sizeof *g);
}

static void link_arc(FlowGraph *g, int a, int u, int v, int cap, double cost)
{
    g->head[a] = v;
    g->residual[a] = cap;
    g->cost[a] = cost;
    g->next[a] = g->first[u];
    g->first[u] = a;
}

int flow_add_arc(FlowGraph *g, int u, int v, int capacity, double cost)
{
    if (g->n_arcs + 2 > g->cap_arcs) return -1;
    int a = g->n_arcs;
    link_arc(g, a, u, v, capacity, cost);
    link_arc(g, a + 1, v, u, 0, -cost);
    g->n_arcs += 2;
    return a;
}

int flow_of(const FlowGraph *g, int arc) { return g->residual[arc ^ 1]; }

/* Potentials = shortest distances from the source over the original arcs,
 * computed in topological order (Kahn); -1 if there is a cycle. */
static int initial_potentials(const FlowGraph *g, int source, double *pi)
{
    int n = g->n_nodes, *indeg = calloc((size_t)n, sizeof(int)), *order = malloc((size_t)n * sizeof(int));
    if (!indeg || !order) { free(indeg); free(order); return -1; }
    for (int a = 0; a < g->n_arcs; a += 2) indeg[g->head[a]]++;
    int head = 0, tail = 0;
    for (int v = 0; v < n; v++)
        if (!indeg[v]) order[tail++] = v;
    for (int v = 0; v < n; v++) pi[v] = INFINITY;
    pi[source] = 0;
    while (head < tail) {
        int u = order[head++];
        for (int a = g->first[u]; a >= 0; a = g->next[a]) {
            if (a & 1) continue; /* reverse arcs carry no capacity yet */
            int v = g->head[a];
            if (pi[u] + g->cost[a] < pi[v]) pi[v] = pi[u] + g->cost[a];
            if (--indeg[v] == 0) order[tail++] = v;
        }
    }
    free(indeg);
    free(order);
    if (tail != n) return -1;
    for (int v = 0; v < n; v++)
        if (isinf(pi[v])) pi[v] = 0; /* unreachable: never on a path */
    return 0;
}

/* Binary min-heap of (distance, node) with lazy deletion. */
typedef struct {
    double *key;
    int *node;
    int n;
} Heap;

static void heap_push(Heap *h, double key, int node)
{
    int i = h->n++;
    while (i > 0 && h->key[(i - 1) / 2] > key) {
        h->key[i] = h->key[(i - 1) / 2];
        h->node[i] = h->node[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->key[i] = key;
    h->node[i] = node;
}

static int heap_pop(Heap *h, double *key)
{
    int top = h->node[0];
    *key = h->key[0];
    double k = h->key[--h->n];
    int v = h->node[h->n], i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->key[c + 1] < h->key[c]) c++;
        if (h->key[c] >= k) break;
        h->key[i] = h->key[c];
        h->node[i] = h->node[c];
        i = c;
    }
    h->key[i] = k;
    h->node[i] = v;
    return top;
}

/* Dijkstra on reduced costs c(a) + pi[u] - pi[v] >= 0. */
static int shortest_path(const FlowGraph *g, int source, int sink, const double *pi, double *dist, int *via, Heap *h)
{
    for (int v = 0; v < g->n_nodes; v++) dist[v] = INFINITY;
    dist[source] = 0;
    h->n = 0;
    heap_push(h, 0, source);
    while (h->n) {
        double d;
        int u = heap_pop(h, &d);
        if (d > dist[u]) continue;
        for (int a = g->first[u]; a >= 0; a = g->next[a]) {
            if (!g->residual[a]) continue;
            int v = g->head[a];
            double reduced = g->cost[a] + pi[u] - pi[v];
            if (reduced < 0) reduced = 0; /* rounding only: exact reduced costs are >= 0 */
            if (d + reduced < dist[v]) {
                dist[v] = d + reduced;
                via[v] = a;
                heap_push(h, dist[v], v);
            }
        }
    }
    return isinf(dist[sink]) ? -1 : 0;
}

int flow_min_cost(FlowGraph *g, int source, int sink, int amount, double *total_cost)
{
    int n = g->n_nodes, rc = 0;
    double *pi = malloc((size_t)n * sizeof(double)), *dist = malloc((size_t)n * sizeof(double));
    int *via = malloc((size_t)n * sizeof(int));
    Heap h = {malloc((size_t)g->n_arcs * sizeof(double) + sizeof(double)), malloc((size_t)g->n_arcs * sizeof(int) + sizeof(int)), 0};
    if (!pi || !dist || !via || !h.key || !h.node || initial_potentials(g, source, pi)) rc = -1;
    double cost = 0;
    for (int sent = 0; sent < amount && rc == 0; sent++) {
        if (shortest_path(g, source, sink, pi, dist, via, &h)) { rc = -1; break; }
        for (int v = 0; v < n; v++)
            if (!isinf(dist[v])) pi[v] += dist[v];
        for (int v = sink; v != source; v = g->head[via[v] ^ 1]) { /* one unit along the path */
            g->residual[via[v]]--;
            g->residual[via[v] ^ 1]++;
            cost += g->cost[via[v]];
        }
    }
    free(pi); free(dist); free(via); free(h.key); free(h.node);
    if (total_cost) *total_cost = cost;
    return rc;
}
