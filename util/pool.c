#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Tasks are handed out from one 64-bit word: the job's generation in the
 * high half, the next task in the low half.  A helper that wakes late, after
 * its job ended, sees another generation and takes nothing; the caller waits
 * only for tasks that were taken, never for helpers to wake up (on a busy
 * machine that wait would cost a time slice per matrix product). */
struct WorkerPool {
    int n_threads;
    pthread_t *tid;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* a new job (or stop) */
    uint32_t generation;        /* of the current job; under lock */
    int stop;
    PoolTask fn;                /* the current job; under lock */
    void *ctx;
    int n_tasks;
    _Atomic uint64_t next;      /* generation << 32 | next task */
    atomic_int done;            /* tasks of the current job finished */
    atomic_uint published;      /* generation, readable without the lock (helpers spin on it) */
};

typedef struct {
    WorkerPool *pool;
    int worker;
} Helper;

/* Takes task indices of job `gen` until none are left. */
static void take_tasks(WorkerPool *p, uint32_t gen, PoolTask fn, void *ctx, int n_tasks, int worker)
{
    for (;;) {
        uint64_t v = atomic_load(&p->next);
        if ((uint32_t)(v >> 32) != gen || (int)(uint32_t)v >= n_tasks) return;
        if (!atomic_compare_exchange_weak(&p->next, &v, v + 1)) continue;
        fn(ctx, (int)(uint32_t)v, worker);
        atomic_fetch_add(&p->done, 1);
    }
}

static void pause_briefly(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *helper_main(void *arg)
{
    WorkerPool *p = ((Helper *)arg)->pool;
    int worker = ((Helper *)arg)->worker;
    free(arg);
    uint32_t seen = 0;
    for (;;) {
        /* the next job usually follows within microseconds: look before sleeping */
        for (int spin = 0; spin < 4000 && atomic_load(&p->published) == seen; spin++) pause_briefly();
        pthread_mutex_lock(&p->lock);
        while (p->generation == seen && !p->stop) pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) break;
        seen = p->generation;
        PoolTask fn = p->fn;
        void *ctx = p->ctx;
        int n_tasks = p->n_tasks;
        pthread_mutex_unlock(&p->lock);
        take_tasks(p, seen, fn, ctx, n_tasks, worker);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

WorkerPool *pool_create(int n_threads, KvError *err)
{
    if (n_threads < 1) n_threads = 1;
    WorkerPool *p = calloc(1, sizeof *p);
    if (!p || !(p->tid = calloc((size_t)n_threads, sizeof *p->tid))) {
        free(p);
        kv_fail(err, "out of memory for %d threads", n_threads);
        return NULL;
    }
    p->n_threads = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->published, 0);
    for (int w = 1; w < n_threads; w++) {
        Helper *h = malloc(sizeof *h);
        if (!h) break;
        *h = (Helper){p, w};
        if (pthread_create(&p->tid[w], NULL, helper_main, h) != 0) {
            free(h);
            break;
        }
        p->n_threads++;
    }
    if (p->n_threads < n_threads) {
        kv_fail(err, "cannot start %d threads (started %d)", n_threads, p->n_threads);
        pool_free(p);
        return NULL;
    }
    return p;
}

void pool_free(WorkerPool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int w = 1; w < p->n_threads; w++) pthread_join(p->tid[w], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->tid);
    free(p);
}

int pool_threads(const WorkerPool *p) { return p ? p->n_threads : 1; }

void pool_run(WorkerPool *p, int n_tasks, PoolTask fn, void *ctx)
{
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->lock);
    uint32_t gen = ++p->generation;
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->done, 0);
    atomic_store(&p->next, (uint64_t)gen << 32);
    atomic_store(&p->published, gen);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    take_tasks(p, gen, fn, ctx, n_tasks, 0);
    /* every task is taken; wait for the ones helpers are still running */
    for (int spin = 0; atomic_load(&p->done) < n_tasks; spin++)
        if (spin < 4000)
            pause_briefly();
        else
            sched_yield();
}

int pool_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}
