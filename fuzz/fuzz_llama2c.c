/* Fuzzing the llama2.c checkpoint and tokenizer.bin readers: the input's
 * first two bytes say where the checkpoint ends; the rest is tokenizer.bin. */
#include <stdlib.h>
#include <unistd.h>

#include "../trace/model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t cut = ((size_t)data[0] << 8 | data[1]) * 16;
    if (cut > size - 2) cut = size - 2;
    char model_path[64], tokenizer_path[64];
    int model_fd = fuzz_file(data + 2, cut, model_path, sizeof model_path);
    int tokenizer_fd = fuzz_file(data + 2 + cut, size - 2 - cut, tokenizer_path, sizeof tokenizer_path);
    if (model_fd >= 0 && tokenizer_fd >= 0) {
        Model m;
        KvError err;
        if (model_load(&m, model_path, tokenizer_path, &err) == 0) {
            int *ids = NULL, n = 0;
            if (m.has_tokenizer && tokenizer_encode(&m.tokenizer, "Once upon a time \xc3\xa9\xff", &ids, &n, &err) == 0)
                free(ids);
            model_free(&m);
        }
    }
    if (model_fd >= 0) close(model_fd);
    if (tokenizer_fd >= 0) close(tokenizer_fd);
    return 0;
}
