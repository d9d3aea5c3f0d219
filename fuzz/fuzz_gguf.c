/* Fuzzing the GGUF reader and the model loader: the input is a GGUF file
 * (header, metadata, tensor table, tensor data), loaded as `record` loads a
 * model, then its tokenizer (when it has one) encodes a short text. */
#include <stdlib.h>
#include <unistd.h>

#include "../trace/h5util.h"
#include "../trace/model.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    Model m;
    KvError err;
    if (model_load(&m, path, NULL, &err) == 0) {
        int *ids = NULL, n = 0;
        if (m.has_tokenizer && tokenizer_encode(&m.tokenizer, "Once upon a time, <s> \xe2\x96\x81 \xff", &ids, &n, &err) == 0)
            free(ids);
        model_free(&m);
    }
    close(fd);
    return 0;
}
