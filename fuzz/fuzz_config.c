/* fuzz_config.c: a model directory's JSON descriptions (model.c): parts 0
 * to 3 of the input (cut at FUZZ_SEP) are config.json, modules.json,
 * 1_Pooling/config.json and sentence_bert_config.json. A config that loads
 * must describe a model whose sizes are usable (positive, heads dividing
 * the hidden size), since the loaders size allocations from it. */
#include "fuzz.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *NAMES[] = {"config.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                              "1_Pooling"};
static void cleanup(void) { fuzz_cleanup_dir(fuzz_dir("config"), NAMES, 5); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    const char *dir = fuzz_dir("config");
    if (!once) {
        once = 1;
        char p[512];
        fuzz_path(p, sizeof p, dir, "1_Pooling");
        mkdir(p, 0700);
        atexit(cleanup);
    }
    fuzz_part parts[4];
    int n = fuzz_split(data, size, parts, 4);
    for (int i = 0; i < 4; i++) fuzz_write_part(dir, NAMES[i], parts, n, i);
    cb_err err;
    bert_config c;
    if (cb_bert_config_load(&c, dir, &err) == 0) {
        if (c.vocab_size < 1 || c.hidden_size < 1 || c.num_hidden_layers < 1 || c.num_attention_heads < 1 ||
            c.hidden_size % c.num_attention_heads || c.intermediate_size < 1 || c.max_position_embeddings < 1 ||
            c.type_vocab_size < 1 || c.pad_token_id >= c.vocab_size || !(c.layer_norm_eps > 0))
            abort();
    }
    sbert_config s;
    if (cb_sbert_config_load(&s, dir, &err) == 0 && s.max_seq_length < 0) abort();
    return 0;
}
