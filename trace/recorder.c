#include "recorder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    meta->rope_theta = c->rope_theta;
    snprintf(meta->recorder_version, sizeof meta->recorder_version, "kvtrace %s", KVTRACE_VERSION);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(meta->created, sizeof meta->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(meta->command, sizeof meta->command, "%s", command_line ? command_line : "");
}

/* Everything one recording run needs; lives for the whole run. */
typedef struct {
    const Model *model;
    const RecordOptions *opt;
    TraceWriter *writer;
    ForwardState state;
    Sampler sampler;
    float *logits;    /* [max_block][vocab] */
    Progress progress;
    long tokens_done, tokens_total;
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

/* Prints a token the way llama2.c does: no leading space right after BOS,
 * <0xNN> pieces as raw bytes, unprintable single bytes skipped. */
static void echo_token(const Model *m, FILE *out, int prev, int id)
{
    if (!out || !m->has_tokenizer) return;
    char buf[512];
    size_t n = tokenizer_decode(&m->tokenizer, id, buf, sizeof buf);
    const char *p = buf;
    if (prev == m->tokenizer.bos_id && n > 0 && buf[0] == ' ') { p++; n--; }
    if (n == 1) {
        unsigned char c = (unsigned char)p[0];
        if (!(c >= 32 && c < 127) && c != '\n' && c != '\t' && c != '\r' && c < 128) return;
    }
    fwrite(p, 1, n, out);
    fflush(out);
}

/* Runs n tokens at pos through the model, staging their rows first. */
static int run_block(Recording *rec, const int *tokens, int n, int pos, KvError *err)
{
    TraceWriter *w = rec->writer;
    if (trace_writer_pending(w) + n > trace_writer_stage_rows(w) && trace_writer_flush(w, err)) return -1;
    for (int r = 0; r < n; r++)
        if (trace_writer_stage_token(w, pos + r, tokens[r], piece_of(rec->model, tokens[r])))
            return kv_fail(err, "staging token %d failed", pos + r);
    ForwardObserver obs = {rec, observe_qkv, rec->opt->trace.store_attention ? observe_attention : NULL};
    if (forward_block(rec->model, &rec->state, tokens, n, pos, rec->logits, &obs, NULL, err)) return -1;
    rec->tokens_done += n;
    if (rec->opt->test_signal && rec->tokens_done >= rec->opt->test_signal_after) raise(rec->opt->test_signal);
    progress_update(&rec->progress, rec->tokens_done, rec->tokens_total, "tokens");
    return 0;
}

static int interrupted(const Recording *rec)
{
    return rec->opt->interrupted && *rec->opt->interrupted;
}

/* Records one sequence; returns 1 when interrupted, -1 on error, 0 done. */
static int record_sequence(Recording *rec, int *tokens, int n_prompt, const char *prompt_text, KvError *err)
{
    const Model *m = rec->model;
    const RecordOptions *opt = rec->opt;
    int V = m->cfg.vocab_size, block = rec->state.max_block;
    if (block > trace_writer_stage_rows(rec->writer)) block = trace_writer_stage_rows(rec->writer);
    if (trace_writer_begin_sequence(rec->writer, prompt_text, n_prompt, err) ||
        trace_writer_sequence_attr(rec->writer, "generate_requested", opt->generate, err) ||
        trace_writer_sequence_attr(rec->writer, "temperature", opt->temperature, err) ||
        trace_writer_sequence_attr(rec->writer, "top_p", opt->top_p, err) ||
        trace_writer_sequence_attr(rec->writer, "seed", (double)opt->seed, err))
        return -1;
    for (int i = 1; i < n_prompt; i++) echo_token(m, opt->echo, tokens[i - 1], tokens[i]);
    int pos = 0;
    while (pos < n_prompt) {
        if (interrupted(rec)) return 1;
        int n = n_prompt - pos < block ? n_prompt - pos : block;
        if (run_block(rec, tokens + pos, n, pos, err)) return -1;
        for (int r = 0; r < n && pos + r + 1 < n_prompt; r++)
            trace_writer_set_nll(rec->writer, pos + r, (float)token_nll(rec->logits + (size_t)r * V, V, tokens[pos + r + 1]));
        pos += n;
        if (pos == n_prompt) memmove(rec->logits, rec->logits + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    }
    for (int step = 0; step < opt->generate; step++) {
        if (interrupted(rec)) return 1;
        int next = sampler_next(&rec->sampler, rec->logits);
        if (opt->stop_at_eos && m->has_tokenizer && (next == m->tokenizer.eos_id || next == m->tokenizer.bos_id)) break;
        trace_writer_set_nll(rec->writer, pos - 1, (float)token_nll(rec->logits, V, next));
        echo_token(m, opt->echo, tokens[pos - 1], next);
        tokens[pos] = next;
        if (run_block(rec, tokens + pos, 1, pos, err)) return -1;
        pos++;
    }
    if (opt->echo) fputc('\n', opt->echo);
    return trace_writer_end_sequence(rec->writer, 1, err);
}

/* The ids of sequence i: encoded prompt text or the explicit ids. */
static int sequence_tokens(const Model *m, const RecordOptions *opt, int i, int **tokens, int *n_prompt,
                           KvError *err)
{
    int *ids, n;
    if (opt->token_ids) {
        n = opt->n_token_ids;
        ids = malloc((size_t)n * sizeof *ids);
        if (!ids) return kv_fail(err, "out of memory");
        memcpy(ids, opt->token_ids, (size_t)n * sizeof *ids);
    } else {
        if (!m->has_tokenizer)
            return kv_fail(err, "cannot encode a text prompt: %s (use --tokens with ids)", m->tokenizer_note);
        if (tokenizer_encode(&m->tokenizer, opt->prompts[i], &ids, &n, err)) return -1;
    }
    int total = n + opt->generate;
    if (total > m->cfg.max_seq_len) {
        free(ids);
        return kv_fail(err, "%s: sequence %d needs %d tokens (%d prompt + %d generated), more than the model's "
                       "context of %d", m->path, i, total, n, opt->generate, m->cfg.max_seq_len);
    }
    int *grown = realloc(ids, (size_t)(total > 0 ? total : 1) * sizeof *ids);
    if (!grown) { free(ids); return kv_fail(err, "out of memory"); }
    *tokens = grown;
    *n_prompt = n;
    return 0;
}

static int longest_sequence(const Model *m, const RecordOptions *opt, int *longest, long *total, KvError *err)
{
    int n_seq = opt->token_ids ? 1 : opt->n_prompts;
    *longest = 1;
    *total = 0;
    for (int i = 0; i < n_seq; i++) {
        int *ids = NULL, n = 0;
        if (sequence_tokens(m, opt, i, &ids, &n, err)) return -1;
        free(ids);
        if (n + opt->generate > *longest) *longest = n + opt->generate;
        *total += n + opt->generate;
    }
    return 0;
}

static int record_all(Recording *rec, RecordSummary *sum, KvError *err)
{
    const RecordOptions *opt = rec->opt;
    int n_seq = opt->token_ids ? 1 : opt->n_prompts;
    for (int i = 0; i < n_seq; i++) {
        int *tokens = NULL, n_prompt = 0;
        if (sequence_tokens(rec->model, opt, i, &tokens, &n_prompt, err)) return -1;
        const char *text = opt->token_ids ? "" : opt->prompts[i];
        int rc = record_sequence(rec, tokens, n_prompt, text, err);
        free(tokens);
        if (rc == 0) sum->n_sequences++;
        if (rc != 0) return rc;
    }
    return 0;
}

int record_traces(const Model *m, const RecordOptions *opt, const char *path, RecordSummary *sum, KvError *err)
{
    memset(sum, 0, sizeof *sum);
    Recording rec = {.model = m, .opt = opt};
    int capacity;
    if (longest_sequence(m, opt, &capacity, &rec.tokens_total, err)) return -1;
    TraceMeta meta;
    trace_meta_from_model(&meta, m, opt->command_line);
    int block = opt->max_block > 0 ? opt->max_block : 64;
    if (forward_state_init(&rec.state, &m->cfg, capacity, block, err)) return -1;
    rec.logits = malloc((size_t)block * m->cfg.vocab_size * sizeof(float));
    if (!rec.logits || sampler_init(&rec.sampler, m->cfg.vocab_size, opt->temperature, opt->top_p, opt->seed)) {
        free(rec.logits);
        forward_state_free(&rec.state);
        return kv_fail(err, "out of memory");
    }
    rec.writer = trace_writer_create(path, &meta, &opt->trace, capacity, err);
    int rc = -1;
    if (rec.writer) {
        progress_begin(&rec.progress, "record");
        double t0 = kv_now_seconds();
        rc = record_all(&rec, sum, err);
        sum->seconds = kv_now_seconds() - t0;
        progress_end(&rec.progress);
        KvError close_err;
        if (trace_writer_close(rec.writer, rc == 0, &close_err) && rc == 0) {
            *err = close_err;
            rc = -1;
        }
    }
    sum->n_tokens = rec.tokens_done;
    sum->interrupted = rc == 1;
    sampler_free(&rec.sampler);
    free(rec.logits);
    forward_state_free(&rec.state);
    if (rc == 1)
        return kv_fail(err, "%s: interrupted after %ld tokens; the trace is kept and flagged incomplete", path,
                       rec.tokens_done);
    return rc;
}
