/* tests/unit/test_memplan.c -- the memory plan of every example, planned for each
 * target (and with --mpi's gradient buckets), is sound: every value that needs
 * storage has a slot (or its buffer, in place), slots are aligned and inside the
 * workspace, and no two values live at the same time (nor an op's scratch and a
 * value live at its node) share a byte of the same region. Liveness is the
 * plan's own (pass_memplan_live); the check is independent of how slots are
 * chosen. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <limits.h>
#include <string.h>

static const char *const examples[] = {
    "linear_regression", "mlp_regression",  "mlp",      "mnist_cnn", "lenet", "lstm", "dcgan", "char_lstm",
    "gru_rows",          "text_classifier", "tiny_gpt", "tang_poems"};

/* One block of a region that something occupies from node `from` to `to`. */
struct block {
    int id;            /* the node */
    bool scratch;      /* the node's scratch rather than its value */
    enum mem_where r;  /* region */
    int64_t off, size; /* bytes */
    int from, to;      /* nodes, inclusive */
};

static int64_t lines(int64_t bytes) { return (bytes + IR_SLOT_ALIGN - 1) / IR_SLOT_ALIGN * IR_SLOT_ALIGN; }

/* Whether member m of its kernel is read after the kernel or is the root. */
static bool stored(const struct ir_func *f, int m) {
    const struct ir_node *n = &f->nodes[m];
    if (!n->kernel) return true;
    if (ir_kernel_head_op(n->op)) return false;
    bool root = true, used = false;
    for (int u = m + 1; u < ir_func_len(f); u++) {
        if (f->nodes[u].kernel == n->kernel) {
            root = false;
            continue;
        }
        for (int a = 0; a < f->nodes[u].nargs; a++) used |= f->nodes[u].args[a] == m;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) used |= f->outputs[o].value == m;
    return root || used;
}

static void check_func(const char *what, const struct ir_func *f) {
    int len = ir_func_len(f);
    int *last = malloc(sizeof *last * (size_t)len), *uses = malloc(sizeof *uses * (size_t)len);
    struct block *b = NULL;
    pass_memplan_live(f, last, uses);
    CHECK(f->planned);
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &f->nodes[id];
        const struct ir_mem *mem = &n->mem;
        bool own = n->op != OP_INPUT && n->op != OP_PARAM && !pass_memplan_aliases(n) && stored(f, id);
        bool ok = own ? mem->where != MEM_NONE : mem->where == MEM_NONE;
        if (!ok) {
            fprintf(stderr, "%s @%s %%%d (%s): %s\n", what, f->name, id, op_info[n->op].name,
                    own ? "needs storage and has none" : "has storage it does not need");
            test_failed++;
        }
        if (mem->where == MEM_FIXED || mem->where == MEM_BATCH) {
            int64_t size = lines(shape_static_numel(&n->type.shape) * (int64_t)dtype_size(n->type.dtype));
            vec_push(b, ((struct block){id, false, mem->where, mem->off, size, id, last[id]}));
        }
        if (mem->scratch_where != MEM_NONE) {
            int at = id; /* a head's scratch is taken when its kernel runs, at the root */
            for (int j = id + 1; n->kernel && j < len; j++)
                if (f->nodes[j].kernel == n->kernel) at = j;
            vec_push(b, ((struct block){id, true, mem->scratch_where, mem->scratch_off,
                                        lines(mem->scratch * 4), at, at}));
        }
    }
    for (size_t i = 0; i < vec_len(b); i++) {
        int64_t region = b[i].r == MEM_BATCH ? f->ws_batch : f->ws_fixed;
        if (b[i].off % IR_SLOT_ALIGN || b[i].off + b[i].size > region) {
            fprintf(stderr, "%s @%s %%%d: block [%lld, +%lld) outside the region of %lld bytes\n", what,
                    f->name, b[i].id, (long long)b[i].off, (long long)b[i].size, (long long)region);
            test_failed++;
        }
        for (size_t j = i + 1; j < vec_len(b); j++) {
            if (b[i].r != b[j].r || b[i].off >= b[j].off + b[j].size || b[j].off >= b[i].off + b[i].size)
                continue;
            if (b[i].to < b[j].from || b[j].to < b[i].from) continue;
            fprintf(stderr, "%s @%s: %%%d%s and %%%d%s share bytes while both live\n", what, f->name, b[i].id,
                    b[i].scratch ? " (scratch)" : "", b[j].id, b[j].scratch ? " (scratch)" : "");
            test_failed++;
        }
    }
    test_passed++;
    vec_free(b);
    free(last);
    free(uses);
}

int main(void) {
    const struct cg_target *targets[] = {&cg_target_c, &cg_target_opencl};
    int planned = 0;
    for (size_t e = 0; e < sizeof examples / sizeof *examples; e++)
        for (int v = 0; v < 3; v++) { /* C, OpenCL, C with --mpi */
            char path[512], what[128];
            snprintf(path, sizeof path, "%s/examples/%s.net", NETC_SOURCE_DIR, examples[e]);
            snprintf(what, sizeof what, "%s (%s)", examples[e], v == 0 ? "c" : v == 1 ? "opencl" : "c, mpi");
            struct ir_module *m = fe_load(path);
            pass_target = targets[v == 1]->plan;
            struct pass_options opt = {true, NULL, false, false, stdout};
            if (!m || !ir_verify(m) || !pass_run_list(m, pass_pipeline_dp(NULL, v == 2, false), &opt)) {
                TEST_FAIL_("%s: does not compile", what);
                if (m) ir_module_free(m);
                continue;
            }
            for (size_t f = 0; f < vec_len(m->funcs); f++, planned++) check_func(what, m->funcs[f]);
            ir_module_free(m);
        }
    CHECK(planned >= 3 * 12 * 2);
    TEST_DONE();
}
