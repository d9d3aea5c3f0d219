/* One user turn in the chat templates kvtrace knows, written as llama.cpp's
 * llm_chat_apply_template writes them (BOS comes from encoding with
 * add_special, not from here). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"

/* s without leading and trailing white space, as "%.*s" arguments. */
static int trimmed(const char *s, const char **start)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)*s)) { s++; n--; }
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    *start = s;
    return (int)n;
}

int tokenizer_chat_prompt(const Tokenizer *t, const char *system, const char *user, char **out, KvError *err)
{
    const char *u, *s = "";
    int ul, sl = 0, n = -1;
    *out = NULL;
    switch (t->chat) {
    case CHAT_LLAMA3:
        ul = trimmed(user, &u);
        if (system) sl = trimmed(system, &s);
        n = asprintf(out, "%s%.*s%s<|start_header_id|>user<|end_header_id|>\n\n%.*s<|eot_id|>"
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     system ? "<|start_header_id|>system<|end_header_id|>\n\n" : "", sl, s,
                     system ? "<|eot_id|>" : "", ul, u);
        break;
    case CHAT_CHATML:
        n = asprintf(out, "%s%s%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                     system ? "<|im_start|>system\n" : "", system ? system : "", system ? "<|im_end|>\n" : "", user);
        break;
    case CHAT_LLAMA2: case CHAT_LLAMA2_SYS: case CHAT_LLAMA2_STRIP: {
        int strip = t->chat == CHAT_LLAMA2_STRIP, sys_block = t->chat != CHAT_LLAMA2;
        if (strip) {
            ul = trimmed(user, &u);
            if (system) sl = trimmed(system, &s);
        } else {
            u = user;
            ul = (int)strlen(user);
            if (system) { s = system; sl = (int)strlen(system); }
        }
        if (!system) n = asprintf(out, "[INST] %.*s [/INST]", ul, u);
        else if (sys_block) n = asprintf(out, "[INST] <<SYS>>\n%.*s\n<</SYS>>\n\n%.*s [/INST]", sl, s, ul, u);
        else n = asprintf(out, "[INST] %.*s\n%.*s [/INST]", sl, s, ul, u);
        break;
    }
    case CHAT_OTHER:
        return kv_fail(err, "%s: its chat template (tokenizer.chat_template) is not one kvtrace applies "
                       "(Llama 3, ChatML, Llama 2)", t->path);
    case CHAT_NONE:
        return kv_fail(err, "%s: no chat template (tokenizer.chat_template) and no Llama 3 or ChatML special tokens",
                       t->path);
    }
    if (n < 0) {
        *out = NULL;
        return kv_fail(err, "out of memory applying the chat template");
    }
    return 0;
}
