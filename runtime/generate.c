/* runtime/generate.c -- `PROGRAM generate`: samples text from a trained language
 * model one token at a time. A model whose compiler emitted `generate_step`
 * (recurrent language models: every [N, T] input read at one step, each
 * recurrent layer's state in a batch-1 state buffer `<layer>.state_l<k>`) is
 * fed one token per call, the state carrying the prefix: no step recomputes
 * it. Other models (a transformer) run `forward` over the window of the last
 * T tokens and read the logits at the last position. The vocabulary comes
 * from the checkpoint's metadata (text.c). Sections: options, sampling, the
 * loop. */
#include "runtime/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- options -- */

static const char usage[] =
    "usage: %s generate --load CK [options]\n"
    "\n"
    "Samples text from a trained language model (an i32 [N, T] token input and\n"
    "logits [N, T, V] as its first output), one token at a time, and prints it.\n"
    "\n"
    "  --load F          the checkpoint (its metadata holds the vocabulary)\n"
    "  --prompt TEXT     text to start from (default: a newline)\n"
    "  --length N        tokens to generate (default 200)\n"
    "  --temperature X   divides the logits before sampling (default 1; 0: always\n"
    "                    the most likely token)\n"
    "  --top-k K         sample among the K most likely tokens only (default 0: all)\n"
    "  --seed S          random seed of the sampling (default 1)\n"
    "  --threads T       threads\n"
    "\n"
    "Recurrent models run their generate_step entry point: one token per step,\n"
    "the recurrent state carried from step to step; other models run forward\n"
    "over the last T tokens at each step.\n";

struct gen_opts {
    const char *load, *prompt;
    int64_t length, top_k;
    double temperature;
    uint64_t seed;
    int threads;
};

static int gen_fail(const char *prog, const char *fmt, const char *a) {
    fprintf(stderr, "%s: error: ", prog);
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    return 1;
}

/* A number option: its value as a double within [lo, hi], else an error. */
static int num_opt(const char *prog, const char *flag, const char *val, double lo, double hi, double *out) {
    char *end;
    double v = val ? strtod(val, &end) : 0;
    if (!val || !*val || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: error: %s expects a number from %g to %g, got '%s'\n", prog, flag, lo, hi,
                val ? val : "");
        return 2;
    }
    *out = v;
    return 0;
}

static int parse(const char *prog, int argc, char **argv, struct gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->prompt = NULL, o->length = 200, o->temperature = 1, o->seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf(usage, prog);
            return -1;
        }
        const char *eq = strchr(a, '=');
        char flag[32];
        size_t fl = eq ? (size_t)(eq - a) : strlen(a);
        snprintf(flag, sizeof flag, "%.*s", (int)(fl < sizeof flag - 1 ? fl : sizeof flag - 1), a);
        static const char *const known[] = {"--load",  "--prompt", "--length", "--temperature",
                                            "--top-k", "--seed",   "--threads"};
        int k = -1;
        for (int j = 0; j < (int)(sizeof known / sizeof *known); j++)
            if (strcmp(flag, known[j]) == 0) k = j;
        if (k < 0) {
            fprintf(stderr, "%s: error: unknown option '%s' (see `%s generate --help`)\n", prog, a, prog);
            return 2;
        }
        const char *val = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!val) {
            fprintf(stderr, "%s: error: %s needs a value\n", prog, flag);
            return 2;
        }
        double v = 0;
        int rc = 0;
        switch (k) {
        case 0:
            o->load = val;
            break;
        case 1:
            o->prompt = val;
            break;
        case 2:
            rc = num_opt(prog, flag, val, 0, 1e9, &v), o->length = (int64_t)v;
            break;
        case 3:
            rc = num_opt(prog, flag, val, 0, 1e6, &v), o->temperature = v;
            break;
        case 4:
            rc = num_opt(prog, flag, val, 0, 1e9, &v), o->top_k = (int64_t)v;
            break;
        case 5:
            rc = num_opt(prog, flag, val, 0, 9.0e15, &v), o->seed = (uint64_t)v;
            break;
        default:
            rc = num_opt(prog, flag, val, 0, 4096, &v), o->threads = (int)v;
            break;
        }
        if (rc) return rc;
        if (k >= 2 && k != 3 && v != (double)(int64_t)v) {
            fprintf(stderr, "%s: error: %s expects an integer, got '%s'\n", prog, flag, val);
            return 2;
        }
    }
    if (!o->load) {
        fprintf(stderr, "%s: error: generate needs --load CK (a checkpoint of a trained language model)\n",
                prog);
        return 2;
    }
    return 0;
}

/* --------------------------------------------------------------- sampling -- */

/* A token from v logits (or probabilities when probs): the padding and unknown
 * ids are never drawn; temperature 0 takes the most likely. scratch has v floats. */
static int32_t sample(const float *logits, int64_t v, int probs, const struct gen_opts *o,
                      struct nrt_rng *rng, float *scratch) {
    int64_t first = v > NRT_TOKEN_UNK + 1 ? NRT_TOKEN_UNK + 1 : 0;
    float mx = -INFINITY;
    int32_t best = (int32_t)first;
    for (int64_t i = first; i < v; i++) {
        float l = probs ? logf(logits[i] > 0 ? logits[i] : 1e-30f) : logits[i];
        scratch[i] = l;
        if (l > mx) mx = l, best = (int32_t)i;
    }
    if (o->temperature <= 0 || !(mx > -INFINITY)) return best;
    float cut = -INFINITY; /* top-k: the k-th largest logit */
    if (o->top_k > 0 && o->top_k < v - first) {
        for (int64_t k = 0; k < o->top_k; k++) { /* k passes: the next largest below the last */
            float next = -INFINITY;
            for (int64_t i = first; i < v; i++)
                if (scratch[i] > next && (k == 0 || scratch[i] < cut)) next = scratch[i];
            cut = next;
        }
    }
    double total = 0;
    for (int64_t i = first; i < v; i++) {
        double p = scratch[i] >= cut ? exp((scratch[i] - mx) / o->temperature) : 0;
        scratch[i] = (float)p;
        total += p;
    }
    double u = nrt_rng_uniform(rng) * total;
    for (int64_t i = first; i < v; i++) {
        u -= scratch[i];
        if (u < 0) return (int32_t)i;
    }
    return best;
}

/* Whether logits look like a softmax's output: every value in [0, 1], summing to 1. */
static int are_probs(const float *x, int64_t v) {
    double s = 0;
    for (int64_t i = 0; i < v; i++) {
        if (!(x[i] >= 0 && x[i] <= 1)) return 0;
        s += x[i];
    }
    return fabs(s - 1) < 1e-3;
}

/* ------------------------------------------------------------------- loop -- */

int nrt_generate_main(int argc, char **argv, const struct nrt_model *m, const char *prog) {
    struct gen_opts o;
    int rc = parse(prog, argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    nrt_blas_threads(o.threads);
    int tok = -1;
    for (int i = 0; i < m->n_buffers && tok < 0; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind == NRT_BUF_INPUT && b->dtype == NRT_DT_I32 && b->rank == 2 && b->dims[0] == NRT_DIM_N)
            tok = i;
    }
    int step = m->generate_entry, fwd = m->forward_entry;
    int e = step >= 0 ? step : fwd;
    const struct nrt_output_desc *out =
        e >= 0 && m->entries[e].n_outputs > 0 ? &m->entries[e].outputs[0] : NULL;
    if (tok < 0 || !out || out->rank != 3 || out->dtype != NRT_DT_F32)
        return gen_fail(prog,
                        "%s is not a language model: generate needs a token input i32[N, T] and logits "
                        "[N, T, V] as the first output",
                        m->name);
    int64_t t = m->buffers[tok].dims[1], v = out->dims[2];
    struct nrt_vocab voc;
    memset(&voc, 0, sizeof voc);
    struct nrt_ctx ctx;
    int32_t *ids = NULL;
    float *scratch = NULL;
    char *text = NULL;
    rc = 1;
    if (nrt_ctx_init(&ctx, m, 1, 1) != NRT_OK) {
        fprintf(stderr, "%s: error: %s\n", prog, nrt_error());
        return 1;
    }
    if (nrt_ckpt_load(&ctx, o.load) != NRT_OK || nrt_vocab_ckpt_load(&voc, o.load) != NRT_OK) {
        fprintf(stderr, "%s: error: %s\n", prog, nrt_error());
        goto done;
    }
    const char *prompt = o.prompt && *o.prompt ? o.prompt : "\n";
    int64_t np = nrt_text_encode(&voc, prompt, strlen(prompt), NULL, 0);
    if (np < 0) {
        fprintf(stderr, "%s: error: --prompt: %s\n", prog, nrt_error());
        goto done;
    }
    int64_t total = np + o.length;
    ids = malloc(sizeof *ids * (size_t)(total > 0 ? total : 1));
    scratch = malloc(sizeof *scratch * (size_t)v);
    if (!ids || !scratch) {
        fprintf(stderr, "%s: error: out of memory\n", prog);
        goto done;
    }
    nrt_text_encode(&voc, prompt, strlen(prompt), ids, np);
    /* A fresh recurrent state: the generation state buffers start at zero. */
    for (int i = 0; i < m->n_buffers; i++)
        if (m->buffers[i].kind == NRT_BUF_STATE && strstr(m->buffers[i].name, ".state_l"))
            memset(ctx.buf[i], 0,
                   sizeof(float) * (size_t)nrt_desc_count(m->buffers[i].rank, m->buffers[i].dims, 1));
    ctx.host_dirty = 1;
    struct nrt_rng rng;
    nrt_rng_init(&rng, o.seed, 7);
    int32_t *in = ctx.buf[tok];
    int64_t have = np, fed = 0;
    while (have < total) {
        int64_t at;
        if (step >= 0) { /* feed the tokens not fed yet, one per call */
            for (; fed < have; fed++) {
                in[0] = ids[fed];
                if (nrt_ctx_run(&ctx, step, 1) != NRT_OK) goto run_failed;
            }
            at = 0;
        } else { /* the window of the last T tokens, left-aligned */
            int64_t w = have < t ? have : t;
            memset(in, 0, sizeof *in * (size_t)t);
            memcpy(in, ids + have - w, sizeof *in * (size_t)w);
            if (nrt_ctx_run(&ctx, fwd, 1) != NRT_OK) goto run_failed;
            at = w - 1;
        }
        const float *logits = (const float *)ctx.out[0] + at * v;
        ids[have++] = sample(logits, v, are_probs(logits, v), &o, &rng, scratch);
    }
    size_t need = nrt_text_decode(&voc, ids, total, NULL, 0);
    text = malloc(need + 1);
    if (!text) {
        fprintf(stderr, "%s: error: out of memory\n", prog);
        goto done;
    }
    nrt_text_decode(&voc, ids, total, text, need + 1);
    fputs(text, stdout);
    fputc('\n', stdout);
    rc = 0;
    goto done;
run_failed:
    fprintf(stderr, "%s: error: %s\n", prog, ctx.err[0] ? ctx.err : nrt_error());
done:
    free(text);
    free(ids);
    free(scratch);
    nrt_vocab_free(&voc);
    nrt_ctx_free(&ctx);
    return rc;
}
