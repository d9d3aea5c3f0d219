/* The merge loop both tokenizer families share: a min-heap of the adjacent
 * pairs that can merge, keyed by (rank, position of the left symbol), over a
 * doubly linked list of symbols.  Each symbol owns at most one heap entry
 * (the pair it starts), updated in place when a neighbour changes, so a text
 * of n symbols costs O(n log n) time and O(n) memory. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"

/* A 4-ary heap with the keys inline: children sit side by side in memory,
 * which matters once a long text's heap outgrows the cache. */
static void place(MergeHeap *h, int pos, MergeEntry e)
{
    h->heap[pos] = e;
    h->where[e.sym] = pos;
}

static void sift_up(MergeHeap *h, int pos)
{
    MergeEntry e = h->heap[pos];
    while (pos > 0) {
        int parent = (pos - 1) / 4;
        if (h->heap[parent].key <= e.key) break;
        place(h, pos, h->heap[parent]);
        pos = parent;
    }
    place(h, pos, e);
}

static void sift_down(MergeHeap *h, int pos)
{
    MergeEntry e = h->heap[pos];
    for (;;) {
        int first = 4 * pos + 1, best = -1;
        uint64_t best_key = e.key;
        for (int c = first; c < first + 4 && c < h->n; c++)
            if (h->heap[c].key < best_key) { best = c; best_key = h->heap[c].key; }
        if (best < 0) break;
        place(h, pos, h->heap[best]);
        pos = best;
    }
    place(h, pos, e);
}

static void heap_remove(MergeHeap *h, int sym)
{
    int pos = h->where[sym];
    if (pos < 0) return;
    h->where[sym] = -1;
    if (pos == --h->n) return;
    place(h, pos, h->heap[h->n]); /* the last entry fills the hole, then moves up or down */
    if (pos > 0 && h->heap[pos].key < h->heap[(pos - 1) / 4].key) sift_up(h, pos);
    else sift_down(h, pos);
}

/* (Re)computes the entry of the pair that symbol i starts. */
static void update_pair(MergeHeap *h, const MergeSymbol *syms, int i, PairRule rule, const void *ctx)
{
    int j = syms[i].next;
    uint32_t rank;
    int merged;
    if (j < 0 || !rule(ctx, &syms[i], &syms[j], &rank, &merged)) {
        heap_remove(h, i);
        return;
    }
    MergeEntry e = {(uint64_t)rank << 32 | (uint32_t)i, i};
    h->merged[i] = merged;
    int pos = h->where[i];
    if (pos < 0) {
        place(h, h->n++, e);
        sift_up(h, h->n - 1);
    } else {
        uint64_t old = h->heap[pos].key;
        h->heap[pos] = e;
        if (e.key < old) sift_up(h, pos);
        else sift_down(h, pos);
    }
}

static int heap_reserve(MergeHeap *h, int n)
{
    if (n <= h->cap) return 0;
    MergeEntry *a = realloc(h->heap, (size_t)n * sizeof *a);
    if (a) h->heap = a;
    int *b = a ? realloc(h->where, (size_t)n * sizeof *b) : NULL;
    if (b) h->where = b;
    int *c = b ? realloc(h->merged, (size_t)n * sizeof *c) : NULL;
    if (!c) return -1;
    h->merged = c;
    h->cap = n;
    return 0;
}

int merge_symbols(MergeSymbol *syms, int n, PairRule rule, const void *ctx, MergeHeap *h)
{
    if (n < 2) return 0;
    if (heap_reserve(h, n)) return -1;
    h->n = 0;
    for (int i = 0; i < n; i++) h->where[i] = -1;
    for (int i = 0; i + 1 < n; i++) update_pair(h, syms, i, rule, ctx);
    while (h->n > 0) {
        int i = h->heap[0].sym, j = syms[i].next;
        syms[i].len += syms[j].len;
        syms[i].id = h->merged[i];
        syms[j].len = 0;
        heap_remove(h, j);
        syms[i].next = syms[j].next;
        if (syms[j].next >= 0) syms[syms[j].next].prev = i;
        update_pair(h, syms, i, rule, ctx);
        if (syms[i].prev >= 0) update_pair(h, syms, syms[i].prev, rule, ctx);
    }
    return 0;
}

void merge_heap_free(MergeHeap *h)
{
    free(h->heap);
    free(h->where);
    free(h->merged);
    memset(h, 0, sizeof *h);
}

void link_symbols(MergeSymbol *syms, int n)
{
    for (int i = 0; i < n; i++) {
        syms[i].prev = i - 1;
        syms[i].next = i + 1 < n ? i + 1 : -1;
    }
}
