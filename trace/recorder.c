#include "recorder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../util/progress.h"
#include "forward.h"
#include "sampler.h"

void trace_meta_from_model(TraceMeta *meta, const Model *m, const char *command_line)
{
    memset(meta, 0, sizeof *meta);
    const ModelConfig *c = &m->cfg;
    snprintf(meta->model_name, sizeof meta->model_name, "%s", m->name);
    snprintf(meta->model_arch, sizeof meta->model_arch, "%s", m->arch);
    snprintf(meta->model_digest, sizeof meta->model_digest, "%s", m->digest);
    const char *base = strrchr(m->path, '/');
    snprintf(meta->model_file, sizeof meta->model_file, "%s", base ? base + 1 : m->path);
    snprintf(meta->model_weight_type, sizeof meta->model_weight_type, "%s", m->weight_type);
    meta->n_layers = c->n_layers;
    meta->n_heads = c->n_heads;
    meta->n_kv_heads = c->n_kv_heads;
    meta->head_dim = c->head_dim;
    meta->dim = c->dim;
    meta->vocab_size = c->vocab_size;
    model_rope_layout(m, meta->rope_layout, sizeof meta->rope_layout);
    meta->rope_theta = c->rope_theta;
    snprintf(meta->recorder_version, sizeof meta->recorder_version, "kvtrace %s", KVTRACE_VERSION);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(meta->created, sizeof meta->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(meta->command, sizeof meta->command, "%s", command_line ? command_line : "");
}

/* Rows of logits held at once: the NLL needs every row's, but one at a time;
 * holding a whole block's would cost [block][vocab] floats (16 MB at 128 rows
 * of 32000), the largest buffer of a prefill after the weights and KV cache. */
#define LOGIT_ROWS 16

/* Everything one recording run needs; lives for the whole run. */
typedef struct {
    const Model *model;
    const RecordOptions *opt;
    TraceWriter *writer;
    ForwardState state;
    Sampler sampler;
    float *logits;    /* [LOGIT_ROWS][vocab]: a block's logits, a few rows at a time */
    Progress progress;
    long tokens_done, tokens_total;
    RecordSummary *sum;
} Recording;

static int observe_qkv(void *ctx, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    Recording *rec = ctx;
    return trace_writer_stage_qkv(rec->writer, layer, pos0, n, q, k, v);
}

static int observe_attention(void *ctx, int layer, int head, int pos0, int n, const float *probs, int ld)
{
    Recording *rec = ctx;
    return trace_writer_stage_attention(rec->writer, layer, head, pos0, n, probs, ld);
}

static const char *piece_of(const Model *m, int id)
{
    return m->has_tokenizer && id < m->tokenizer.vocab_size ? m->tokenizer.pieces[id] : "";
}

/* Prints a token the way llama2.c does: no leading space right after BOS
 * (SentencePiece's dummy prefix), <0xNN> pieces as raw bytes, unprintable
 * single bytes skipped. */
static void echo_token(const Model *m, FILE *out, int prev, int id)
{
    if (!out || !m->has_tokenizer) return;
    char buf[512];
    size_t n = tokenizer_decode(&m->tokenizer, id, buf, sizeof buf);
    const char *p = buf;
    if (m->tokenizer.kind == TOKENIZER_SPM && prev == m->tokenizer.bos_id && n > 0 && buf[0] == ' ') { p++; n--; }
    if (n == 1) {
        unsigned char c = (unsigned char)p[0];
        if (!(c >= 32 && c < 127) && c != '\n' && c != '\t' && c != '\r' && c < 128) return;
    }
    fwrite(p, 1, n, out);
    fflush(out);
}

/* Logits of the block's rows, LOGIT_ROWS at a time: sets the NLL of the first
 * nll_rows rows (their next token is tokens[r + 1]) and leaves the last row's
 * logits at rec->logits[0..vocab). */
static void block_logits(Recording *rec, const int *tokens, int n, int pos, int nll_rows)
{
    int V = rec->model->cfg.vocab_size;
    for (int r0 = 0; r0 < n; r0 += LOGIT_ROWS) {
        int rows = n - r0 < LOGIT_ROWS ? n - r0 : LOGIT_ROWS;
        forward_logits(rec->model, &rec->state, r0, rows, rec->logits);
        for (int r = r0; r < r0 + rows && r < nll_rows; r++)
            trace_writer_set_nll(rec->writer, pos + r, (float)token_nll(rec->logits + (size_t)(r - r0) * V, V, tokens[r + 1]));
        if (r0 + rows == n && rows > 1)
            memmove(rec->logits, rec->logits + (size_t)(rows - 1) * V, (size_t)V * sizeof(float));
    }
}

/* Runs n tokens at pos through the model, staging their rows first; see
 * block_logits for nll_rows and where the last row's logits are left. */
static int run_block(Recording *rec, const int *tokens, int n, int pos, int nll_rows, int prompt, KvError *err)
{
    TraceWriter *w = rec->writer;
    if (trace_writer_pending(w) + n > trace_writer_stage_rows(w) && trace_writer_flush(w, err)) return -1;
    for (int r = 0; r < n; r++)
        if (trace_writer_stage_token(w, pos + r, tokens[r], piece_of(rec->model, tokens[r])))
            return kv_fail(err, "staging token %d failed", pos + r);
    ForwardObserver obs = {rec, observe_qkv, rec->opt->trace.store_attention ? observe_attention : NULL};
    double t0 = kv_now_seconds();
    if (forward_block(rec->model, &rec->state, tokens, n, pos, NULL, &obs, NULL, err)) return -1;
    block_logits(rec, tokens, n, pos, nll_rows);
    double dt = kv_now_seconds() - t0;
    if (prompt) {
        rec->sum->prompt_tokens += n;
        rec->sum->prompt_seconds += dt;
    } else {
        rec->sum->step_tokens += n;
        rec->sum->step_seconds += dt;
    }
    rec->tokens_done += n;
    if (rec->opt->test_signal && rec->tokens_done >= rec->opt->test_signal_after) raise(rec->opt->test_signal);
    progress_update(&rec->progress, rec->tokens_done, rec->tokens_total, "tokens");
    return 0;
}

static int interrupted(const Recording *rec)
{
    return rec->opt->interrupted && *rec->opt->interrupted;
}

/* Records one planned sequence: tokens 0..n_prompt-1 in blocks, the given
 * tokens up to n_given one at a time, then the generated ones.  Returns 1
 * when interrupted, -1 on error, 0 done. */
static int record_sequence(Recording *rec, int *tokens, int n_prompt, int n_given, KvError *err)
{
    const Model *m = rec->model;
    const RecordOptions *opt = rec->opt;
    int V = m->cfg.vocab_size, block = rec->state.max_block;
    if (block > trace_writer_stage_rows(rec->writer)) block = trace_writer_stage_rows(rec->writer);
    if (trace_writer_begin_sequence(rec->writer, err)) return -1;
    for (int i = 1; i < n_prompt; i++) echo_token(m, opt->echo, tokens[i - 1], tokens[i]);
    int pos = 0;
    while (pos < n_prompt) {
        if (interrupted(rec)) return 1;
        int n = n_prompt - pos < block ? n_prompt - pos : block;
        int known = n_prompt - pos - 1 < n ? n_prompt - pos - 1 : n; /* rows whose next token is given */
        if (run_block(rec, tokens + pos, n, pos, known, 1, err)) return -1;
        pos += n;
    }
    for (; pos < n_given; pos++) { /* given continuation, one token at a time */
        if (interrupted(rec)) return 1;
        trace_writer_set_nll(rec->writer, pos - 1, (float)token_nll(rec->logits, V, tokens[pos]));
        echo_token(m, opt->echo, tokens[pos - 1], tokens[pos]);
        if (run_block(rec, tokens + pos, 1, pos, 0, 0, err)) return -1;
    }
    for (int step = 0; step < opt->generate; step++) {
        if (interrupted(rec)) return 1;
        int next = sampler_next(&rec->sampler, rec->logits);
        if (opt->stop_at_eos && m->has_tokenizer && (next == m->tokenizer.eos_id || next == m->tokenizer.bos_id)) break;
        trace_writer_set_nll(rec->writer, pos - 1, (float)token_nll(rec->logits, V, next));
        echo_token(m, opt->echo, tokens[pos - 1], next);
        tokens[pos] = next;
        if (run_block(rec, tokens + pos, 1, pos, 0, 0, err)) return -1;
        pos++;
    }
    if (opt->echo) fputc('\n', opt->echo);
    return trace_writer_end_sequence(rec->writer, 1, err);
}

/* The prompt ids of every sequence, encoded once, each with room for the
 * generated tokens; refused when one would not fit the model's context. */
typedef struct {
    int n;
    int **tokens;
    int *n_given;             /* ids given per sequence (prompt and, with --n-prompt, a given continuation) */
    TraceSequencePlan *plan;
} SequencePlans;

static void plans_free(SequencePlans *p)
{
    for (int i = 0; p->tokens && i < p->n; i++) free(p->tokens[i]);
    free(p->tokens);
    free(p->n_given);
    free(p->plan);
    memset(p, 0, sizeof *p);
}

static int encode_prompt(const Model *m, const RecordOptions *opt, int i, int **ids, int *n, KvError *err)
{
    if (!m->has_tokenizer)
        return kv_fail(err, "cannot encode a text prompt: %s (use --tokens with ids)", m->tokenizer_note);
    /* encoding stops as soon as the prompt outgrows the context: a huge prompt costs little */
    TokenizeOptions o = {.add_special = 1, .parse_special = 1, .max_tokens = m->cfg.max_seq_len};
    int rc = tokenizer_encode_opts(&m->tokenizer, opt->prompts[i], strlen(opt->prompts[i]), &o, ids, n, err);
    if (rc == TOKENIZE_TOO_LONG)
        return kv_fail(err, "%s: sequence %d needs more than %d tokens for its prompt alone, more than the model's "
                       "context of %d", m->path, i, m->cfg.max_seq_len, m->cfg.max_seq_len);
    return rc;
}

static int plan_sequence(const Model *m, const RecordOptions *opt, int i, SequencePlans *p, KvError *err)
{
    int *ids, n;
    if (opt->token_ids) {
        n = opt->n_token_ids;
        ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
        if (!ids) return kv_fail(err, "out of memory");
        memcpy(ids, opt->token_ids, (size_t)n * sizeof *ids);
    } else if (encode_prompt(m, opt, i, &ids, &n, err)) {
        return -1;
    }
    long total = (long)n + opt->generate;
    if (total > m->cfg.max_seq_len) {
        free(ids);
        return kv_fail(err, "%s: sequence %d needs %ld tokens (%d prompt + %d generated), more than the model's "
                       "context of %d", m->path, i, total, n, opt->generate, m->cfg.max_seq_len);
    }
    int *grown = realloc(ids, (size_t)(total > 0 ? total : 1) * sizeof *ids);
    if (!grown) { free(ids); return kv_fail(err, "out of memory"); }
    p->tokens[i] = grown;
    p->n_given[i] = n;
    /* --n-prompt: explicit ids after the first P are a given continuation, run one at a time */
    int n_prompt = opt->token_ids && opt->n_prompt_ids > 0 && opt->n_prompt_ids < n ? opt->n_prompt_ids : n;
    TraceSequencePlan *sp = &p->plan[i];
    *sp = (TraceSequencePlan){.prompt = opt->token_ids ? "" : opt->prompts[i], .n_prompt = n_prompt,
                              .capacity = (int)total,
                              .n_attrs = 4, .attr_names = {"generate_requested", "temperature", "top_p", "seed"},
                              .attr_values = {opt->generate, opt->temperature, opt->top_p, (double)opt->seed}};
    return 0;
}

static int plan_sequences(const Model *m, const RecordOptions *opt, SequencePlans *p, long *total, KvError *err)
{
    memset(p, 0, sizeof *p);
    p->n = opt->token_ids ? 1 : opt->n_prompts;
    p->tokens = calloc((size_t)p->n, sizeof *p->tokens);
    p->n_given = calloc((size_t)p->n, sizeof *p->n_given);
    p->plan = calloc((size_t)p->n, sizeof *p->plan);
    if (!p->tokens || !p->n_given || !p->plan) { plans_free(p); return kv_fail(err, "out of memory"); }
    *total = 0;
    for (int i = 0; i < p->n; i++) {
        if (plan_sequence(m, opt, i, p, err)) { plans_free(p); return -1; }
        *total += p->plan[i].capacity;
    }
    return 0;
}

static int record_all(Recording *rec, const SequencePlans *p, RecordSummary *sum, KvError *err)
{
    for (int i = 0; i < p->n; i++) {
        int rc = record_sequence(rec, p->tokens[i], p->plan[i].n_prompt, p->n_given[i], err);
        if (rc != 0) return rc;
        sum->n_sequences++;
    }
    return 0;
}

/* Where the trace is written.  A new output takes its final name as soon as
 * the file is consistent (SWMR has started): readers can follow the
 * recording, and an interrupted or killed one leaves its prefix there.  A
 * replaced output (--force) is written beside it and moved over it only
 * when the recording succeeded, so the old file survives anything else. */
typedef struct {
    OutputFile out;
    int placed;   /* the file is at its final name */
    dev_t dev;    /* ... and is this one (what may be removed after a failure) */
    ino_t ino;
} TracePlace;

static int place_begin(TracePlace *tp, const RecordOptions *opt, const char *path, KvError *err)
{
    memset(tp, 0, sizeof *tp);
    if (output_begin(&tp->out, path, opt->force, opt->inputs, err)) return -1;
    struct stat st;
    if (stat(tp->out.tmp, &st) == 0) {
        tp->dev = st.st_dev;
        tp->ino = st.st_ino;
    }
    return 0;
}

/* Once the writer is in SWMR mode: a new output moves to its name now. */
static int place_early(TracePlace *tp, KvError *err)
{
    struct stat st;
    if (stat(tp->out.path, &st) == 0) return 0; /* replacing: stays beside it until the end */
    if (output_rename(tp->out.tmp, tp->out.path, 0, err)) return -1;
    tp->placed = 1;
    return 0;
}

/* rc: 0 done, 1 interrupted, -1 failed. */
static int place_end(TracePlace *tp, int rc, KvError *err)
{
    if (tp->placed) {
        struct stat st;
        if (rc < 0 && stat(tp->out.path, &st) == 0 && st.st_dev == tp->dev && st.st_ino == tp->ino)
            unlink(tp->out.path); /* our own half-written trace, nothing else */
        free(tp->out.path);
        free(tp->out.tmp);
        memset(&tp->out, 0, sizeof tp->out);
        return rc;
    }
    if (rc != 0) {
        output_abort(&tp->out);
        return rc;
    }
    return output_commit(&tp->out, err);
}

int record_traces(const Model *m, const RecordOptions *opt, const char *path, RecordSummary *sum, KvError *err)
{
    memset(sum, 0, sizeof *sum);
    Recording rec = {.model = m, .opt = opt, .sum = sum};
    SequencePlans plans;
    if (plan_sequences(m, opt, &plans, &rec.tokens_total, err)) return -1;
    int capacity = 1;
    for (int i = 0; i < plans.n; i++)
        if (plans.plan[i].capacity > capacity) capacity = plans.plan[i].capacity;
    TraceMeta meta;
    trace_meta_from_model(&meta, m, opt->command_line);
    int block = opt->max_block > 0 ? opt->max_block : 64;
    if (forward_state_init(&rec.state, &m->cfg, capacity, block, err)) { plans_free(&plans); return -1; }
    if (opt->threads > 1 && forward_state_threads(&rec.state, opt->threads, err)) {
        forward_state_free(&rec.state);
        plans_free(&plans);
        return -1;
    }
    sum->kv_cache_bytes = 2.0 * m->cfg.n_layers * m->cfg.n_kv_heads * m->cfg.head_dim * (double)capacity * sizeof(float);
    rec.logits = malloc((size_t)LOGIT_ROWS * m->cfg.vocab_size * sizeof(float));
    if (!rec.logits || sampler_init(&rec.sampler, m->cfg.vocab_size, opt->temperature, opt->top_p, opt->seed)) {
        free(rec.logits);
        forward_state_free(&rec.state);
        plans_free(&plans);
        return kv_fail(err, "out of memory");
    }
    TracePlace place;
    int rc = place_begin(&place, opt, path, err);
    if (rc == 0) {
        TraceOptions trace_opt = opt->trace;
        trace_opt.block_rows = block;
        rec.writer = trace_writer_create(place.out.tmp, path, &meta, &trace_opt, plans.plan, plans.n, err);
        rc = rec.writer && trace_writer_kv_source(rec.writer, rec.state.key_cache, rec.state.value_cache, capacity,
                                                  err) == 0
                 ? place_early(&place, err) : -1;
    }
    if (rec.writer) {
        if (rc == 0) {
            progress_begin(&rec.progress, "record");
            double t0 = kv_now_seconds();
            rc = record_all(&rec, &plans, sum, err);
            sum->seconds = kv_now_seconds() - t0;
            progress_end(&rec.progress);
        }
        KvError close_err;
        if (trace_writer_close(rec.writer, rc == 0, &close_err) && rc >= 0) {
            *err = close_err;
            rc = -1;
        }
    }
    if (place.out.path) rc = place_end(&place, rc, err);
    sum->n_tokens = rec.tokens_done;
    sum->interrupted = rc == 1;
    sum->kept_partial = rc == 1 && place.placed;
    sampler_free(&rec.sampler);
    free(rec.logits);
    forward_state_free(&rec.state);
    plans_free(&plans);
    if (rc == 1 && sum->kept_partial)
        return kv_fail(err, "%s: interrupted after %ld tokens; the trace is kept and flagged incomplete", path,
                       rec.tokens_done);
    if (rc == 1)
        return kv_fail(err, "%s: interrupted after %ld tokens; the existing %s was left as it was", path,
                       rec.tokens_done, path);
    return rc;
}
