/* pool.h — a fixed team of worker threads that runs one parallel loop at a
 * time (the forward pass's matrix rows and attention heads).
 *
 * pool_run(p, n, fn, ctx) calls fn(ctx, task, worker) once for every task in
 * 0..n-1 and returns when all are done; the calling thread works too (worker
 * 0).  Which worker runs which task varies from run to run, so a task must
 * compute the same thing whichever worker runs it (use `worker` only to pick
 * scratch memory).  A pool of one thread runs everything in the caller. */
#ifndef KV_POOL_H
#define KV_POOL_H

#include "error.h"

typedef struct WorkerPool WorkerPool;
typedef void (*PoolTask)(void *ctx, int task, int worker);

/* n_threads >= 1, counting the caller. */
WorkerPool *pool_create(int n_threads, KvError *err);
void pool_free(WorkerPool *p);
int pool_threads(const WorkerPool *p);
void pool_run(WorkerPool *p, int n_tasks, PoolTask fn, void *ctx);

/* Online processors: the default thread count. */
int pool_default_threads(void);

#endif
