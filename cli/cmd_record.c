/* kvtrace record MODEL ... -o trace.h5 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../trace/recorder.h"
#include "../util/memory.h"
#include "../util/pool.h"
#include "../util/progress.h"
#include "cli.h"

static volatile sig_atomic_t interrupted_flag;
static void on_signal(int sig) { (void)sig; interrupted_flag = 1; }

static const char RECORD_HELP[] =
    "usage: kvtrace record MODEL (--prompt TEXT | --prompt-file FILE | --tokens 1,2,3) -o TRACE.h5 [options]\n"
    "\n"
    "Runs MODEL (GGUF, or llama2.c .bin with tokenizer.bin beside it) over each prompt, optionally\n"
    "generates, and records tokens, pieces, next-token NLL, and per layer q/k/v after RoPE with key\n"
    "and value norms into an HDF5 trace (see FORMAT.md).\n"
    "\n"
    "  --prompt TEXT          one sequence from this text\n"
    "  --prompt-file FILE     one sequence per non-empty line\n"
    "  --one-sequence         with --prompt-file: the whole file is one prompt (a document)\n"
    "  --tokens IDS           one sequence of explicit token ids (no tokenizer needed)\n"
    "  --n-prompt P           with --tokens: ids 0..P-1 are the prompt, the rest are run one at a\n"
    "                         time as if generated (default: all ids are the prompt)\n"
    "  --generate N           generate N tokens after each prompt (default 0)\n"
    "  --temperature T        0 = greedy (default), else sample\n"
    "  --top-p P              nucleus sampling threshold (default 0.9; 1 = off)\n"
    "  --seed S               sampling seed (default 42)\n"
    "  --no-stop              keep generating past an end-of-text token\n"
    "  --attention            also store attention probabilities [heads][T][T] (O(T^2))\n"
    "  --half                 store q/k/v as float16\n"
    "  --batch N              prompt tokens per forward pass (default 128; fewer with --attention\n"
    "                         on long inputs, whose staged attention rows are bounded)\n"
    "  --threads N            threads (default: every core); results do not depend on N\n"
    "  --tokenizer PATH       tokenizer.bin for a llama2.c checkpoint\n"
    "  --echo                 print the text as it is produced (llama2.c style)\n"
    "  -o, --output FILE      trace to write\n"
    "  --force                replace an existing output file (atomically, once the recording succeeded;\n"
    "                         never a file the command reads)\n";

typedef struct {
    const char *model, *output, *tokenizer, *prompt, *prompt_file, *tokens;
    int force, one_sequence;
    RecordOptions rec;
} RecordArgs;

static int parse_args(int argc, char **argv, RecordArgs *a)
{
    static const struct option longopts[] = {
        {"prompt", 1, 0, 'p'}, {"prompt-file", 1, 0, 'f'}, {"tokens", 1, 0, 't'}, {"generate", 1, 0, 'g'},
        {"temperature", 1, 0, 'T'}, {"top-p", 1, 0, 'P'}, {"seed", 1, 0, 's'}, {"attention", 0, 0, 'a'},
        {"half", 0, 0, 'H'}, {"tokenizer", 1, 0, 'k'}, {"echo", 0, 0, 'e'}, {"output", 1, 0, 'o'},
        {"force", 0, 0, 'F'}, {"no-stop", 0, 0, 'n'}, {"help", 0, 0, 'h'}, {"one-sequence", 0, 0, '1'},
        {"n-prompt", 1, 0, 'N'}, {"batch", 1, 0, 'b'}, {"threads", 1, 0, 'j'}, {0, 0, 0, 0}};
    a->rec.top_p = 0.9f;
    a->rec.max_block = 128;
    a->rec.threads = pool_default_threads();
    a->rec.seed = 42;
    a->rec.stop_at_eos = 1;
    int c;
    long v;
    double d;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': a->prompt = optarg; break;
        case 'f': a->prompt_file = optarg; break;
        case 't': a->tokens = optarg; break;
        case 'g':
            if (parse_int(optarg, 0, 1 << 24, &v)) return cli_usage_error("record", "--generate needs a count >= 0");
            a->rec.generate = (int)v;
            break;
        case 'T':
            if (parse_double(optarg, 0, 100, &d)) return cli_usage_error("record", "--temperature needs 0..100");
            a->rec.temperature = (float)d;
            break;
        case 'P':
            if (parse_double(optarg, 0, 1, &d)) return cli_usage_error("record", "--top-p needs 0..1");
            a->rec.top_p = (float)d;
            break;
        case 's':
            if (parse_int(optarg, 0, 0x7fffffffffffffffL, &v)) return cli_usage_error("record", "--seed needs an integer >= 0");
            a->rec.seed = (uint64_t)v;
            break;
        case 'a': a->rec.trace.store_attention = 1; break;
        case 'H': a->rec.trace.half = 1; break;
        case 'k': a->tokenizer = optarg; break;
        case 'e': a->rec.echo = stdout; break;
        case 'o': a->output = optarg; break;
        case 'F': a->force = 1; break;
        case 'n': a->rec.stop_at_eos = 0; break;
        case '1': a->one_sequence = 1; break;
        case 'N':
            if (parse_int(optarg, 1, 1 << 30, &v)) return cli_usage_error("record", "--n-prompt needs a count >= 1");
            a->rec.n_prompt_ids = (int)v;
            break;
        case 'b':
            if (parse_int(optarg, 1, 1 << 16, &v)) return cli_usage_error("record", "--batch needs 1..65536 tokens");
            a->rec.max_block = (int)v;
            break;
        case 'j':
            if (parse_int(optarg, 1, 256, &v)) return cli_usage_error("record", "--threads needs 1..256");
            a->rec.threads = (int)v;
            break;
        case 'h': fputs(RECORD_HELP, stdout); return -1;
        default: return cli_usage_error("record", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("record", "expected exactly one MODEL argument");
    a->model = argv[optind];
    if (!a->output) return cli_usage_error("record", "missing -o TRACE.h5");
    if (!!a->prompt + !!a->prompt_file + !!a->tokens != 1)
        return cli_usage_error("record", "give exactly one of --prompt, --prompt-file, --tokens");
    if (a->one_sequence && !a->prompt_file) return cli_usage_error("record", "--one-sequence needs --prompt-file");
    if (a->rec.n_prompt_ids && !a->tokens) return cli_usage_error("record", "--n-prompt needs --tokens");
    return 0;
}

/* A testing aid (documented in tests/): KVTRACE_TEST_SIGNAL=INT:N or KILL:N. */
static void test_signal_from_env(RecordOptions *rec)
{
    const char *s = getenv("KVTRACE_TEST_SIGNAL");
    if (!s) return;
    long n = atol(strchr(s, ':') ? strchr(s, ':') + 1 : "0");
    rec->test_signal = !strncmp(s, "KILL", 4) ? SIGKILL : SIGINT;
    rec->test_signal_after = n > 0 ? n : 1;
}

/* The whole file as one NUL-terminated string (a document as one prompt). */
static char *read_whole_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (size_t got; text && (got = fread(text + len, 1, cap - 1 - len, fp)) > 0;) {
        len += got;
        if (len + 1 == cap) {
            char *grown = realloc(text, cap *= 2);
            if (!grown) free(text);
            text = grown;
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!text || bad) { free(text); return NULL; }
    text[len] = 0;
    return text;
}

/* Where memory and time went (peak resident against the model file: the
 * measure of "weights stay encoded"). */
static void report_costs(const RecordSummary *sum, const Model *m, double before_model, double load_seconds)
{
    double now, peak;
    if (memory_resident(&now, &peak)) return;
    fprintf(stderr, "memory: peak=%.1fMiB before_model=%.1fMiB model_file=%.1fMiB kv_cache=%.1fMiB\n", peak,
            before_model, (m->gguf.base ? m->gguf.size : m->map_size) / 1048576.0, sum->kv_cache_bytes / 1048576.0);
    fprintf(stderr, "speed: model loaded and checked in %.2f s", load_seconds);
    if (sum->prompt_tokens)
        fprintf(stderr, ", prompt %ld tokens in %.2f s (%.1f tokens/s)", sum->prompt_tokens, sum->prompt_seconds,
                sum->prompt_tokens / sum->prompt_seconds);
    if (sum->step_tokens)
        fprintf(stderr, ", one at a time %ld tokens in %.2f s (%.1f tokens/s)", sum->step_tokens, sum->step_seconds,
                sum->step_tokens / sum->step_seconds);
    fputc('\n', stderr);
}

static int run_record(RecordArgs *a, const Model *m, const char *cmdline, const OutputInputs *inputs,
                      double before_model, double load_seconds)
{
    char **lines = NULL;
    int n_lines = 0, *ids = NULL, n_ids = 0;
    if (a->prompt_file && a->one_sequence) {
        if (!(lines = malloc(sizeof *lines)) || !(lines[0] = read_whole_file(a->prompt_file))) {
            free(lines);
            return cli_error("record", "cannot read the prompt file");
        }
        n_lines = 1;
        a->rec.prompts = (const char *const *)lines;
        a->rec.n_prompts = 1;
    } else if (a->prompt_file) {
        if (read_lines(a->prompt_file, &lines, &n_lines)) return cli_error("record", "cannot read the prompt file");
        if (n_lines == 0) { free_lines(lines, 0); return cli_usage_error("record", "%s has no prompts", a->prompt_file); }
        a->rec.prompts = (const char *const *)lines;
        a->rec.n_prompts = n_lines;
    } else if (a->prompt) {
        a->rec.prompts = &a->prompt;
        a->rec.n_prompts = 1;
    } else if (parse_int_list(a->tokens, &ids, &n_ids)) {
        return cli_usage_error("record", "--tokens needs comma-separated token ids");
    } else {
        a->rec.token_ids = ids;
        a->rec.n_token_ids = n_ids;
    }
    a->rec.command_line = cmdline;
    a->rec.interrupted = &interrupted_flag;
    a->rec.force = a->force;
    a->rec.inputs = inputs;
    test_signal_from_env(&a->rec);
    RecordSummary sum;
    KvError err;
    int rc = record_traces(m, &a->rec, a->output, &sum, &err);
    free_lines(lines, n_lines);
    free(ids);
    if (rc != 0) return cli_error("record", err.msg);
    fprintf(stderr, "recorded %d sequence(s), %ld tokens in %.2f s (%.0f tokens/s) -> %s\n", sum.n_sequences,
            sum.n_tokens, sum.seconds, sum.seconds > 0 ? sum.n_tokens / sum.seconds : 0.0, a->output);
    report_costs(&sum, m, before_model, load_seconds);
    return 0;
}

int cmd_record(int argc, char **argv)
{
    char *cmdline = cli_command_line(argc, argv); /* before getopt permutes argv */
    RecordArgs a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) { free(cmdline); return rc < 0 ? 0 : rc; }
    OutputInputs inputs = {0};
    KvError err;
    /* the model, its tokenizer and the prompts are never overwritten, even with --force */
    if (output_list_add(&inputs, a.model) || (a.tokenizer && output_list_add(&inputs, a.tokenizer)) ||
        (a.prompt_file && output_list_add(&inputs, a.prompt_file))) {
        free(cmdline);
        output_list_free(&inputs);
        return cli_error("record", "out of memory");
    }
    if (output_check(a.output, a.force, &inputs, &err)) {
        free(cmdline);
        output_list_free(&inputs);
        return cli_error("record", err.msg);
    }
    Model m;
    double before_model = 0, unused;
    memory_resident(&before_model, &unused);
    double t0 = kv_now_seconds();
    if (model_load(&m, a.model, a.tokenizer, &err)) {
        free(cmdline);
        output_list_free(&inputs);
        return cli_error("record", err.msg);
    }
    double load_seconds = kv_now_seconds() - t0;
    if (!m.has_tokenizer && a.tokens) /* text prompts fail below with the reason instead */
        fprintf(stderr, "kvtrace record: note: no usable tokenizer, recording ids without pieces (%s)\n",
                m.tokenizer_note);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = run_record(&a, &m, cmdline, &inputs, before_model, load_seconds);
    model_free(&m);
    output_list_free(&inputs);
    free(cmdline);
    return rc;
}
