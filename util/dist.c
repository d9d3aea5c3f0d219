/* The job layer of dist.h: MPI when built with it and started by mpirun,
 * else every job in this process, in order. */
#include "dist.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "progress.h"

#ifdef KV_MPI
#include <mpi.h>
#endif

static struct {
    int active, rank, size;
} dist_state = {0, 0, 1};

int dist_active(void) { return dist_state.active; }
int dist_rank(void) { return dist_state.rank; }
int dist_size(void) { return dist_state.size; }

/* The variables a launcher sets in every process it starts: Open MPI's
 * mpirun, PMI (MPICH, Slurm's srun --mpi=pmi2) and PMIx. */
static const char *launcher_variable(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (getenv(names[i])) return names[i];
    return NULL;
}

/* ---------------------------------------------------------------- buffers */

void dist_put(DistBuffer *b, const void *p, size_t n)
{
    if (b->failed) return;
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->size + n) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) { b->failed = 1; return; }
        b->data = grown;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->size, p, n);
    b->size += n;
}

void dist_put_int(DistBuffer *b, long v)
{
    int64_t x = v;
    dist_put(b, &x, sizeof x);
}

void dist_get(DistReader *r, void *p, size_t n)
{
    if (r->failed || n > r->size - r->at) {
        r->failed = 1;
        memset(p, 0, n);
        return;
    }
    memcpy(p, r->data + r->at, n);
    r->at += n;
}

long dist_get_int(DistReader *r)
{
    int64_t x;
    dist_get(r, &x, sizeof x);
    return (long)x;
}

static void prepare_one(const DistJobs *jobs, int job, DistBuffer *input)
{
    *input = (DistBuffer){0};
    if (jobs->prepare) jobs->prepare(jobs->ctx, job, input);
}

/* Runs one job into a fresh buffer; a buffer that ran out of memory fails it. */
static int run_one(const DistJobs *jobs, int job, const DistBuffer *input, DistBuffer *out, KvError *err)
{
    *out = (DistBuffer){0};
    DistReader in = {input->data, input->size, 0, 0};
    int rc = input->failed ? kv_fail(err, "out of memory for the job's input")
                           : jobs->run(jobs->ctx, job, &in, out, err);
    if (rc == 0 && out->failed) rc = kv_fail(err, "out of memory for the partial result");
    return rc;
}

static int reduce_one(const DistJobs *jobs, int job, const DistBuffer *in, KvError *err)
{
    DistReader r = {in->data, in->size, 0, 0};
    int rc = jobs->reduce(jobs->ctx, job, &r, err);
    if (rc == 0 && (r.failed || r.at != r.size))
        rc = kv_fail(err, "partial result of %zu bytes does not match its job", in->size);
    return rc;
}

/* "rank R, job J (what): cause" */
static void name_failure(const DistJobs *jobs, int rank, int job, KvError *err)
{
    char what[512] = "";
    if (jobs->describe) jobs->describe(jobs->ctx, job, what, sizeof what);
    kv_wrap(err, "rank %d, job %d of %d (%s)", rank, job, jobs->n_jobs, what);
}

/* Every job here, in order (no MPI). */
static int run_serial(const DistJobs *jobs, KvError *err)
{
    Progress progress;
    progress_begin(&progress, jobs->label);
    int rc = 0;
    for (int j = 0; j < jobs->n_jobs && rc == 0; j++) {
        DistBuffer input, b;
        prepare_one(jobs, j, &input);
        rc = run_one(jobs, j, &input, &b, err) || reduce_one(jobs, j, &b, err);
        if (rc) name_failure(jobs, 0, j, err);
        free(input.data);
        free(b.data);
        progress_update(&progress, j + 1, jobs->n_jobs, "jobs");
    }
    progress_end(&progress);
    return rc ? -1 : 0;
}

#ifndef KV_MPI

int dist_init(int *argc, char ***argv, KvError *err)
{
    (void)argc, (void)argv;
    const char *var = launcher_variable(), *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = getenv("PMI_RANK");
    if (!rank) rank = getenv("PMIX_RANK");
    dist_state.rank = rank ? atoi(rank) : 0; /* so that one rank says why they all stop */
    if (var)
        return kv_fail(err, "started by an MPI launcher (%s is set), but this kvtrace was built without MPI support; "
                       "rebuild it with meson setup -Dmpi=enabled (Debian: libopenmpi-dev) or run it without mpirun",
                       var);
    return 0;
}

void dist_finalize(void) {}

int dist_run(const DistJobs *jobs, KvError *err) { return run_serial(jobs, err); }

int dist_agree(int rc, const char *step, KvError *err) { (void)step, (void)err; return rc ? -1 : 0; }

int dist_share_status(int rc) { return rc; }

char *dist_share_text(const char *text) { return text ? strdup(text) : NULL; }

#else

enum { TAG_RESULT = 1, TAG_JOB = 2, TAG_ERROR = 3 };

int dist_init(int *argc, char ***argv, KvError *err)
{
    if (!launcher_variable()) return 0; /* a plain run never starts MPI (fast, and no launcher needed) */
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return kv_fail(err, "MPI_Init failed");
    if (provided < MPI_THREAD_FUNNELED) { /* rank 0 computes on a thread while its main thread talks */
        MPI_Finalize();
        return kv_fail(err, "the MPI library does not support threads (MPI_THREAD_FUNNELED)");
    }
    dist_state.active = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_state.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_state.size);
    return 0;
}

void dist_finalize(void)
{
    if (dist_state.active) MPI_Finalize();
    dist_state.active = 0;
}

static void nap(long microseconds)
{
    struct timespec ts = {0, microseconds * 1000};
    nanosleep(&ts, NULL);
}

/* Waits without spinning: Open MPI's blocking calls poll a core at 100 %,
 * which would take it from the ranks still computing on a small machine. */
static void wait_request(MPI_Request *req)
{
    int done = 0;
    for (MPI_Test(req, &done, MPI_STATUS_IGNORE); !done; MPI_Test(req, &done, MPI_STATUS_IGNORE)) nap(500);
}

int dist_agree(int rc, const char *step, KvError *err)
{
    if (!dist_state.active) return rc ? -1 : 0;
    int mine = rc ? dist_state.rank : dist_state.size, lowest;
    MPI_Request req;
    MPI_Iallreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    wait_request(&req);
    if (lowest == dist_state.size) return 0;
    if (lowest != 0 && dist_state.rank == lowest)
        MPI_Send(err->msg, (int)sizeof err->msg, MPI_CHAR, 0, TAG_ERROR, MPI_COMM_WORLD);
    if (lowest != 0 && dist_state.rank == 0) {
        MPI_Recv(err->msg, (int)sizeof err->msg, MPI_CHAR, lowest, TAG_ERROR, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        err->msg[sizeof err->msg - 1] = 0;
    }
    if (dist_state.rank == 0) kv_wrap(err, "rank %d, %s", lowest, step);
    return -1;
}

int dist_share_status(int rc)
{
    if (!dist_state.active) return rc;
    MPI_Request req;
    MPI_Ibcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD, &req);
    wait_request(&req);
    return rc;
}

char *dist_share_text(const char *text)
{
    if (!dist_state.active) return text ? strdup(text) : NULL;
    long n = dist_state.rank == 0 ? (text ? (long)strlen(text) : -1) : 0;
    MPI_Request req;
    MPI_Ibcast(&n, 1, MPI_LONG, 0, MPI_COMM_WORLD, &req);
    wait_request(&req);
    if (n < 0) return NULL;
    char *copy = malloc((size_t)n + 1);
    if (!copy) MPI_Abort(MPI_COMM_WORLD, 1); /* a few bytes: the machine is out of memory */
    if (dist_state.rank == 0) memcpy(copy, text, (size_t)n + 1);
    MPI_Ibcast(copy, (int)n + 1, MPI_CHAR, 0, MPI_COMM_WORLD, &req);
    wait_request(&req);
    return copy;
}

/* ---------------------------------------------------------------- rank 0 */

/* What each job cost, for the scaling benchmark (bench/bench_mpi.py): with
 * KVTRACE_DIST_STATS=FILE rank 0 writes one line per job. */
typedef struct {
    int rank;
    double run_s, cpu_s, reduce_s;    /* computing it on its rank (wall, process CPU); folding it in on rank 0 */
    size_t input_bytes, result_bytes; /* the messages */
} JobStats;


typedef struct {
    const DistJobs *jobs;
    pthread_mutex_t lock;
    int next;             /* the next job to hand out */
    int stopping;         /* a job failed: hand out no more */
    int done;             /* jobs finished (for progress) */
    DistBuffer *results;  /* [n] partial results, kept until their turn to be folded in */
    char *ready;          /* [n] */
    int local_finished;
    int failed_rank, failed_job;
    KvError failure;
    JobStats *stats;      /* [n] for KVTRACE_DIST_STATS */
} Coordinator;

static double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* run_one, timed: seconds[0] wall clock, seconds[1] this process's CPU time
 * (what the job would take on idle cores, for the scaling model). */
static int timed_run(const DistJobs *jobs, int job, const DistBuffer *input, DistBuffer *out, double *seconds,
                     KvError *err)
{
    double wall = kv_now_seconds(), cpu = process_cpu_seconds();
    int rc = run_one(jobs, job, input, out, err);
    seconds[0] = kv_now_seconds() - wall;
    seconds[1] = process_cpu_seconds() - cpu;
    return rc;
}

/* The next job to hand out, or -1; its input is prepared in job order. */
static int take_job(Coordinator *co, DistBuffer *input)
{
    pthread_mutex_lock(&co->lock);
    int j = !co->stopping && co->next < co->jobs->n_jobs ? co->next++ : -1;
    if (j >= 0) prepare_one(co->jobs, j, input);
    else *input = (DistBuffer){0};
    if (j >= 0 && co->stats) co->stats[j].input_bytes = input->size;
    pthread_mutex_unlock(&co->lock);
    return j;
}

/* Records a finished job: its result, or the first failure (which stops the run). */
static void finish_job(Coordinator *co, int rank, int job, DistBuffer *result, const double *seconds, int failed,
                       const char *cause)
{
    pthread_mutex_lock(&co->lock);
    co->done++;
    if (co->stats)
        co->stats[job] = (JobStats){rank, seconds[0], seconds[1], 0, co->stats[job].input_bytes, result->size};
    if (failed && !co->stopping) {
        co->stopping = 1;
        co->failed_rank = rank;
        co->failed_job = job;
        snprintf(co->failure.msg, sizeof co->failure.msg, "%s", cause);
    }
    if (!failed) {
        co->results[job] = *result;
        co->ready[job] = 1;
    } else {
        free(result->data);
    }
    pthread_mutex_unlock(&co->lock);
}

/* Rank 0's own share of the jobs, on a thread beside the messaging. */
static void *local_worker(void *arg)
{
    Coordinator *co = arg;
    DistBuffer input;
    for (int j; (j = take_job(co, &input)) >= 0; free(input.data)) {
        DistBuffer b;
        KvError err;
        double seconds[2];
        int failed = timed_run(co->jobs, j, &input, &b, seconds, &err) != 0;
        finish_job(co, 0, j, &b, seconds, failed, err.msg);
    }
    pthread_mutex_lock(&co->lock);
    co->local_finished = 1;
    pthread_mutex_unlock(&co->lock);
    return NULL;
}

/* Receives one worker message ([job][failed][result or cause]) and answers
 * with its next job (-1: none left).  Returns 1 when the worker is done. */
static int serve_worker(Coordinator *co, const MPI_Status *probe)
{
    int count;
    MPI_Get_count(probe, MPI_BYTE, &count);
    DistBuffer msg = {.data = malloc(count > 0 ? (size_t)count : 1)};
    if (!msg.data) { /* cannot even take the message: stop the run */
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Recv(msg.data, count, MPI_BYTE, probe->MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    DistReader r = {msg.data, (size_t)count, 0, 0};
    long job = dist_get_int(&r), failed = dist_get_int(&r);
    double seconds[2];
    dist_get(&r, seconds, sizeof seconds);
    if (job >= 0) {
        DistBuffer result = {0};
        char cause[sizeof co->failure.msg] = "";
        if (failed) snprintf(cause, sizeof cause, "%.*s", (int)(r.size - r.at), (const char *)r.data + r.at);
        else dist_put(&result, r.data + r.at, r.size - r.at);
        if (result.failed) failed = 1, snprintf(cause, sizeof cause, "out of memory on rank 0");
        finish_job(co, probe->MPI_SOURCE, (int)job, &result, seconds, (int)failed, cause);
    }
    free(msg.data);
    DistBuffer input, reply = {0};
    int next = take_job(co, &input);
    dist_put_int(&reply, next);
    dist_put(&reply, input.data, input.size);
    if (reply.failed || reply.size > INT32_MAX) { /* the job fails here, and the worker stops */
        finish_job(co, 0, next, &(DistBuffer){0}, (double[2]){0}, 1,
                   reply.failed ? "out of memory" : "job input over 2 GiB");
        free(reply.data);
        reply = (DistBuffer){0};
        dist_put_int(&reply, next = -1);
    }
    MPI_Send(reply.data, (int)reply.size, MPI_BYTE, probe->MPI_SOURCE, TAG_JOB, MPI_COMM_WORLD);
    free(input.data);
    free(reply.data);
    return next < 0;
}

/* Folds in every result whose turn has come; returns how many. */
static int reduce_ready(Coordinator *co, int *reduced)
{
    int n = 0;
    for (;;) {
        pthread_mutex_lock(&co->lock);
        int go = !co->stopping && *reduced < co->jobs->n_jobs && co->ready[*reduced];
        pthread_mutex_unlock(&co->lock);
        if (!go) return n;
        KvError err;
        DistBuffer *b = &co->results[*reduced];
        double start = kv_now_seconds();
        int failed = reduce_one(co->jobs, *reduced, b, &err) != 0;
        if (co->stats) co->stats[*reduced].reduce_s = kv_now_seconds() - start;
        free(b->data);
        b->data = NULL;
        if (failed) finish_job(co, 0, *reduced, &(DistBuffer){0}, (double[2]){0}, 1, err.msg);
        ++*reduced, n++;
    }
}

static void write_stats(const Coordinator *co, double wall_s)
{
    FILE *f = fopen(getenv("KVTRACE_DIST_STATS"), "w"); /* a benchmark's scratch file: no output rules */
    if (!f) return;
    fprintf(f, "# %s: %d jobs on %d ranks in %.6f s\njob\trank\trun_s\tcpu_s\treduce_s\tinput_bytes\tresult_bytes\n",
            co->jobs->label, co->jobs->n_jobs, dist_state.size, wall_s);
    for (int j = 0; j < co->jobs->n_jobs; j++) {
        const JobStats *s = &co->stats[j];
        fprintf(f, "%d\t%d\t%.6f\t%.6f\t%.6f\t%zu\t%zu\n", j, s->rank, s->run_s, s->cpu_s, s->reduce_s, s->input_bytes,
                s->result_bytes);
    }
    fclose(f);
}

static int coordinate(const DistJobs *jobs, KvError *err)
{
    int n = jobs->n_jobs, workers_left = dist_state.size - 1, reduced = 0, rc = 0;
    double start = kv_now_seconds();
    Coordinator co = {.jobs = jobs, .results = calloc((size_t)n + 1, sizeof(DistBuffer)),
                      .ready = calloc((size_t)n + 1, 1),
                      .stats = getenv("KVTRACE_DIST_STATS") ? calloc((size_t)n + 1, sizeof(JobStats)) : NULL};
    pthread_t local;
    if (!co.results || !co.ready) co.stopping = 1, co.failed_job = -1, kv_fail(&co.failure, "out of memory");
    pthread_mutex_init(&co.lock, NULL);
    int threaded = pthread_create(&local, NULL, local_worker, &co) == 0;
    if (!threaded) local_worker(&co); /* no second thread: rank 0's jobs first, then the others' results */
    Progress progress;
    progress_begin(&progress, jobs->label);
    for (;;) {
        int busy = reduce_ready(&co, &reduced), flag;
        pthread_mutex_lock(&co.lock);
        int finished = co.local_finished && workers_left == 0, done = co.done;
        pthread_mutex_unlock(&co.lock);
        progress_update(&progress, done, n, "jobs");
        if (finished && (reduced == n || co.stopping)) break;
        MPI_Status probe;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag, &probe);
        if (flag) workers_left -= serve_worker(&co, &probe), busy = 1;
        if (!busy) nap(1000); /* a job takes far longer than a millisecond; polling costs rank 0 CPU */
    }
    progress_end(&progress);
    if (threaded) pthread_join(local, NULL);
    if (co.stats && !co.stopping) write_stats(&co, kv_now_seconds() - start);
    free(co.stats);
    if (co.stopping) {
        *err = co.failure;
        if (co.failed_job >= 0) name_failure(jobs, co.failed_rank, co.failed_job, err);
        rc = -1;
    }
    for (int j = 0; co.results && j < n; j++) free(co.results[j].data);
    free(co.results);
    free(co.ready);
    pthread_mutex_destroy(&co.lock);
    return rc;
}

/* ---------------------------------------------------------------- workers */

/* Sends the last job's result (or failure; job -1 at first) and returns the
 * next job, with its input in *input. */
static int exchange(long job, int failed, const double *seconds, const DistBuffer *result, const char *cause,
                    DistBuffer *input)
{
    DistBuffer msg = {0};
    dist_put_int(&msg, job);
    dist_put_int(&msg, failed);
    dist_put(&msg, seconds, 2 * sizeof(double));
    if (failed) dist_put(&msg, cause, strlen(cause));
    else if (result) dist_put(&msg, result->data, result->size);
    if (msg.failed || msg.size > INT32_MAX) { /* say so instead */
        const char *why = msg.failed ? "out of memory sending the result" : "partial result over 2 GiB";
        free(msg.data);
        msg = (DistBuffer){0};
        dist_put_int(&msg, job);
        dist_put_int(&msg, 1);
        dist_put(&msg, seconds, 2 * sizeof(double));
        dist_put(&msg, why, strlen(why));
    }
    MPI_Send(msg.data, (int)msg.size, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD);
    free(msg.data);
    int flag = 0, count;
    MPI_Status probe;
    for (MPI_Iprobe(0, TAG_JOB, MPI_COMM_WORLD, &flag, &probe); !flag;
         MPI_Iprobe(0, TAG_JOB, MPI_COMM_WORLD, &flag, &probe))
        nap(500); /* see wait_request */
    MPI_Get_count(&probe, MPI_BYTE, &count);
    *input = (DistBuffer){.data = malloc(count > 0 ? (size_t)count : 1), .size = (size_t)count};
    if (!input->data) MPI_Abort(MPI_COMM_WORLD, 1); /* cannot take the message: stop the run */
    MPI_Recv(input->data, count, MPI_BYTE, 0, TAG_JOB, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    DistReader r = {input->data, input->size, 0, 0};
    long next = dist_get_int(&r);
    memmove(input->data, input->data + r.at, input->size - r.at); /* the input proper */
    input->size -= r.at;
    return (int)next;
}

static void work(const DistJobs *jobs)
{
    DistBuffer result = {0}, input = {0};
    KvError err = {""};
    int failed = 0;
    double seconds[2] = {0, 0};
    for (int job = -1, next; (next = exchange(job, failed, seconds, &result, err.msg, &input)) >= 0; job = next) {
        free(result.data);
        failed = timed_run(jobs, next, &input, &result, seconds, &err) != 0;
        free(input.data);
    }
    free(input.data);
    free(result.data);
}

int dist_run(const DistJobs *jobs, KvError *err)
{
    if (!dist_state.active) return run_serial(jobs, err);
    int rc = 0;
    if (dist_state.rank == 0) rc = coordinate(jobs, err);
    else work(jobs);
    return dist_share_status(rc) ? -1 : 0; /* rank 0 holds the message */
}

#endif
