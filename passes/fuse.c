/* passes/fuse.c -- kernel formation: groups nodes into kernels (`kernel=K`, the
 * invariant is in docs/ir.md, "Kernels") so that codegen emits one function per
 * kernel. Per function, from the last node down, each f32 elementwise node not yet
 * grouped roots a kernel that grows through operands of the root's shape: further
 * elementwise ops, and at most one matmul or conv2d head (used only by the kernel;
 * its own operands stay outside). An elementwise operand with other users joins
 * too when those users run after the kernel (later nodes, assigns, outputs): the
 * kernel then stores it as one more result (a multi-output kernel, e.g. Adam's
 * m, v and parameter updates in one loop, or a pre-activation that the backward
 * pass reads next to the activation). With an operand come its other
 * elementwise users before the root that read only members (siblings:
 * gelu_deriv(x) beside gelu(x), passes/simplify.c); a gelu_deriv joins no kernel
 * as an operand. The target (pass_target) bounds a kernel's
 * inputs and outputs as it grows, and a kernel it cannot emit whole (too many
 * arrays, or a member it does not fuse) is not formed: its nodes stay on their
 * own, so what the IR says is what every backend emits. On targets that fuse
 * pooling (pass_target.fuse_pool), a 2x2 max pool that is the only reader of a
 * conv2d kernel storing nothing but its root then becomes that kernel's root:
 * the convolution's full-size result is never stored (inference). On targets
 * that fuse it (pass_target.fuse_gemm_update), a weight gradient's matmul
 * read only by its Adam update joins the update's kernel as its head
 * (pass_gemm_adam, the gemm-update kernels of docs/ir.md): the backend runs
 * the update inside the GEMM. */
#include "passes/passes.h"

#include <string.h>

/* Whether node id is f32 and reads only f32 values. */
static bool all_f32(const struct ir_func *f, int id) {
    const struct ir_node *n = &f->nodes[id];
    if (n->type.dtype != DT_F32) return false;
    for (int a = 0; a < n->nargs; a++)
        if (f->nodes[n->args[a]].type.dtype != DT_F32) return false;
    return true;
}

/* Distinct values read from outside kernel k by its members. */
static int count_inputs(const struct ir_func *f, const int *group, int k, int max) {
    int seen[64], nseen = 0;
    NETC_ASSERT(max < 64);
    for (size_t g = 0; g < vec_len(group); g++) {
        const struct ir_node *n = &f->nodes[group[g]];
        for (int a = 0; a < n->nargs; a++) {
            int x = n->args[a];
            if (f->nodes[x].kernel == k) continue;
            bool dup = false;
            for (int s = 0; s < nseen && !dup; s++) dup = seen[s] == x;
            if (dup) continue;
            if (nseen == (int)(sizeof seen / sizeof *seen)) return nseen + 1;
            seen[nseen++] = x;
        }
    }
    return nseen;
}

/* Users of each node: users[x] is a vec of node ids (one per operand slot). */
static int **users_of(const struct ir_func *f) {
    int len = ir_func_len(f);
    int **users = calloc((size_t)len, sizeof *users);
    if (!users) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < len; i++)
        for (int a = 0; a < f->nodes[i].nargs; a++) vec_push(users[f->nodes[i].args[a]], i);
    return users;
}

/* Whether node x may join kernel k rooted at `root` although not all its users
 * are members: every other user runs after the kernel. *escapes tells whether
 * it has such a user (or is an output), so that the kernel must store it. */
static bool joins_after(const struct ir_func *f, int *const *users, int x, int k, int root, bool *escapes) {
    *escapes = false;
    for (size_t u = 0; u < vec_len(users[x]); u++) {
        const struct ir_node *un = &f->nodes[users[x][u]];
        if (un->kernel == k) continue;
        if (users[x][u] < root && un->op != OP_ASSIGN) return false;
        *escapes = true;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) *escapes |= f->outputs[o].value == x;
    return true;
}

/* The elementwise users of x, a node joining kernel k (kernel already set),
 * that may join with it although they are not on the root's operand tree: not
 * in a kernel, before the root, of the root's shape, f32, and reading nothing
 * but members (x among them), like gelu_deriv(x) beside the forward's gelu(x)
 * (passes/simplify.c). They are marked as members and listed in sib (at most
 * max); the caller checks their other users. Returns how many. */
static int siblings(const struct ir_func *f, int *const *users, int x, int k, int root, int *sib, int max) {
    int ns = 0;
    for (size_t i = 0; i < vec_len(users[x]) && ns < max; i++) {
        const int u = users[x][i];
        struct ir_node *un = &f->nodes[u];
        if (un->kernel || u >= root || !ir_kernel_ewise_op(un->op) || !all_f32(f, u) ||
            !shape_equal(&un->type.shape, &f->nodes[root].type.shape))
            continue;
        bool inside = true;
        for (int a = 0; a < un->nargs && inside; a++) inside = f->nodes[un->args[a]].kernel == k;
        if (!inside) continue;
        un->kernel = k;
        sib[ns++] = u;
    }
    return ns;
}

/* The arrays the loop nest of kernel k (members `group`) reads: every value from
 * outside and its head, once per way of reading it (whole with broadcasting, or
 * per channel of a bias axis). */
static int count_arrays(const struct ir_func *f, const int *group, int k) {
    struct {
        int value, axis;
    } seen[64];
    int nseen = 0;
    for (size_t g = 0; g < vec_len(group); g++) {
        const struct ir_node *n = &f->nodes[group[g]];
        if (ir_kernel_head_op(n->op)) continue;
        for (int a = 0; a < n->nargs; a++) {
            int x = n->args[a], axis = -1;
            if (f->nodes[x].kernel == k && !ir_kernel_head_op(f->nodes[x].op)) continue; /* in a register */
            if (n->op == OP_BIAS_ADD && a == 1) axis = (int)ir_attr_i(n, ATTR_AXIS);
            if (n->op == OP_BATCHNORM && a >= 1) axis = 1; /* gamma, beta, mean, var: per channel */
            bool dup = false;
            for (int s = 0; s < nseen && !dup; s++) dup = seen[s].value == x && seen[s].axis == axis;
            if (dup) continue;
            if (nseen == (int)(sizeof seen / sizeof *seen)) return nseen + 1;
            seen[nseen].value = x, seen[nseen].axis = axis, nseen++;
        }
    }
    return nseen;
}

/* Whether target t emits the group as one kernel. */
static bool target_fuses(const struct ir_func *f, const int *group, int k, const struct pass_target *t) {
    for (size_t g = 0; g < vec_len(group); g++)
        if (f->nodes[group[g]].op == OP_BATCHNORM && !t->fuse_batchnorm) return false;
    return count_arrays(f, group, k) <= t->fuse_max_arrays;
}

/* Whether kernel k (root x) is a conv2d head, a bias_add on its channels
 * and/or a relu, in that order, every member but x read only inside it. */
static bool conv_kernel_alone(const struct ir_func *f, int *const *users, int k, int x) {
    bool conv = false;
    int prev = -1, step = 0; /* members so far: 0 conv2d, 1 bias_add, 2 relu */
    for (int m = 0; m <= x; m++) {
        const struct ir_node *n = &f->nodes[m];
        if (n->kernel != k) continue;
        int at = n->op == OP_CONV2D ? 0 : n->op == OP_BIAS_ADD ? 1 : n->op == OP_RELU ? 2 : 3;
        if (at == 3 || (prev < 0) != (at == 0) || (prev >= 0 && (at <= step || n->args[0] != prev)) ||
            (at == 1 && (ir_attr_i(n, ATTR_AXIS) != 1 || f->nodes[n->args[1]].kernel == k)))
            return false;
        conv |= at == 0;
        prev = m, step = at;
        if (m == x) continue;
        for (size_t u = 0; u < vec_len(users[m]); u++)
            if (f->nodes[users[m][u]].kernel != k) return false;
        for (size_t o = 0; o < vec_len(f->outputs); o++)
            if (f->outputs[o].value == m) return false;
    }
    for (int j = x + 1; j < ir_func_len(f); j++)
        if (f->nodes[j].kernel == k) return false; /* x is not the root */
    return conv;
}

/* Max pools that close a conv2d kernel (the file's comment); returns how many. */
static int fuse_pools(struct ir_func *f, int *const *users, const int *uses) {
    int joined = 0;
    for (int p = 0; p < ir_func_len(f); p++) {
        struct ir_node *pn = &f->nodes[p];
        if (pn->kernel || !ir_kernel_pool_op(pn) || !all_f32(f, p)) continue;
        int x = pn->args[0], k = f->nodes[x].kernel;
        if (k <= 0 || uses[x] != 1 || !conv_kernel_alone(f, users, k, x)) continue;
        pn->kernel = k;
        joined++;
    }
    return joined;
}

/* --------------------------------------------------- gemm-update kernels */

/* Whether id is a member of kernel k with operation op. */
static bool is_op(const struct ir_func *f, int id, int k, enum op op) {
    return f->nodes[id].kernel == k && f->nodes[id].op == op;
}

/* Whether id is an f32[] value from outside kernel k. */
static bool is_scalar(const struct ir_func *f, int id, int k) {
    const struct ir_node *n = &f->nodes[id];
    return n->kernel != k && n->type.dtype == DT_F32 && n->type.shape.rank == 0;
}

/* Whether id is an f32 array from outside kernel k of exactly shape s. */
static bool is_array(const struct ir_func *f, int id, int k, const struct shape *s) {
    const struct ir_node *n = &f->nodes[id];
    return n->kernel != k && n->type.dtype == DT_F32 && shape_equal(&n->type.shape, s);
}

/* Whether id is a member mul(s, x) or mul(x, s) of kernel k with s a scalar
 * from outside: *s and *x then. */
static bool scaled(const struct ir_func *f, int id, int k, int *s, int *x) {
    if (!is_op(f, id, k, OP_MUL)) return false;
    const int *a = f->nodes[id].args;
    int i = is_scalar(f, a[0], k) ? 0 : is_scalar(f, a[1], k) ? 1 : -1;
    if (i < 0) return false;
    *s = a[i], *x = a[1 - i];
    return true;
}

/* Whether id is a member add(mul(s0, x0), mul(s1, x1)) of kernel k whose
 * terms read, one a member (*mx, scaled by *ms), the other a value from
 * outside (*ox, scaled by *os). */
static bool blend(const struct ir_func *f, int id, int k, int *ms, int *mx, int *os, int *ox) {
    if (!is_op(f, id, k, OP_ADD)) return false;
    int s0, x0, s1, x1;
    const int *a = f->nodes[id].args;
    if (!scaled(f, a[0], k, &s0, &x0) || !scaled(f, a[1], k, &s1, &x1)) return false;
    bool in0 = f->nodes[x0].kernel == k, in1 = f->nodes[x1].kernel == k;
    if (in0 == in1) return false;
    *ms = in0 ? s0 : s1, *mx = in0 ? x0 : x1, *os = in0 ? s1 : s0, *ox = in0 ? x1 : x0;
    return true;
}

/* Whether node id is read by a node outside kernel k or is an output. */
static bool used_outside(const struct ir_func *f, int id, int k) {
    for (int u = id + 1; u < ir_func_len(f); u++) {
        if (f->nodes[u].kernel == k) continue;
        for (int a = 0; a < f->nodes[u].nargs; a++)
            if (f->nodes[u].args[a] == id) return true;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value == id) return true;
    return false;
}

/* Whether value x, through its aliases, reads a buffer that an assign of one
 * of the values in outs (n of them) writes. */
static bool reads_assigned(const struct ir_func *f, int x, const int *outs, int n) {
    for (int depth = 0; depth < 16 && f->nodes[x].op != OP_PARAM; depth++) {
        if (!pass_memplan_aliases(&f->nodes[x]) || f->nodes[x].op == OP_INPUT) return false;
        x = f->nodes[x].args[0];
    }
    if (f->nodes[x].op != OP_PARAM) return true; /* too deep: say yes */
    for (int a = 0; a < ir_func_len(f); a++) {
        const struct ir_node *an = &f->nodes[a];
        if (an->op != OP_ASSIGN || strcmp(an->sym, f->nodes[x].sym) != 0) continue;
        for (int i = 0; i < n; i++)
            if (an->args[0] == outs[i]) return true;
    }
    return false;
}

bool pass_gemm_adam(const struct ir_func *f, int k, struct pass_gemm_adam *out) {
    if (k <= 0) return false;
    int root = -1, head = -1, nmem = 0;
    for (int i = 0; i < ir_func_len(f); i++) {
        if (f->nodes[i].kernel != k) continue;
        nmem++, root = i;
        if (ir_kernel_head_op(f->nodes[i].op)) {
            if (head >= 0) return false;
            head = i;
        }
    }
    if (head < 0 || f->nodes[head].op != OP_MATMUL || f->nodes[head].type.shape.rank != 2 ||
        !is_op(f, root, k, OP_SUB))
        return false;
    const struct shape *ys = &f->nodes[root].type.shape;
    struct pass_gemm_adam u = {.head = head, .w_new = root, .decay = -1, .wd = -1};
    int q, den, d1, sq, g, gg, base = f->nodes[root].args[0], mids[18], nm = 0;
    /* w' = base - step * (m' / (sqrt(v') / bc2 + eps)) */
    if (!scaled(f, f->nodes[root].args[1], k, &u.step, &q) || !is_op(f, q, k, OP_DIV)) return false;
    mids[nm++] = f->nodes[root].args[1], mids[nm++] = q;
    u.m_new = f->nodes[q].args[0], den = f->nodes[q].args[1];
    if (!is_op(f, den, k, OP_ADD)) return false;
    int e = is_scalar(f, f->nodes[den].args[1], k) ? 1 : is_scalar(f, f->nodes[den].args[0], k) ? 0 : -1;
    if (e < 0) return false;
    u.eps = f->nodes[den].args[e], d1 = f->nodes[den].args[1 - e];
    if (!is_op(f, d1, k, OP_DIV) || !is_scalar(f, f->nodes[d1].args[1], k)) return false;
    u.bc2 = f->nodes[d1].args[1], sq = f->nodes[d1].args[0];
    if (!is_op(f, sq, k, OP_SQRT)) return false;
    u.v_new = f->nodes[sq].args[0];
    mids[nm++] = den, mids[nm++] = d1, mids[nm++] = sq;
    /* base = w or w * decay */
    if (f->nodes[base].kernel == k) {
        if (!scaled(f, base, k, &u.decay, &u.w_old)) return false;
        mids[nm++] = base;
    } else
        u.w_old = base;
    /* m' = b1*m + c1*g', v' = b2*v + c2*(g'*g') */
    if (!blend(f, u.m_new, k, &u.c1, &g, &u.b1, &u.m_old) ||
        !blend(f, u.v_new, k, &u.c2, &gg, &u.b2, &u.v_old) || !is_op(f, gg, k, OP_MUL) ||
        f->nodes[gg].args[0] != g || f->nodes[gg].args[1] != g)
        return false;
    mids[nm++] = f->nodes[u.m_new].args[0], mids[nm++] = f->nodes[u.m_new].args[1];
    mids[nm++] = f->nodes[u.v_new].args[0], mids[nm++] = f->nodes[u.v_new].args[1], mids[nm++] = gg;
    /* g' = g, or g + wd*w */
    if (g != head) {
        if (!is_op(f, g, k, OP_ADD)) return false;
        const int *a = f->nodes[g].args;
        int h = a[0] == head ? 0 : a[1] == head ? 1 : -1, x;
        if (h < 0 || !scaled(f, a[1 - h], k, &u.wd, &x) || x != u.w_old) return false;
        mids[nm++] = g, mids[nm++] = a[1 - h];
    }
    if (!is_array(f, u.w_old, k, ys) || !is_array(f, u.m_old, k, ys) || !is_array(f, u.v_old, k, ys))
        return false;
    /* exactly these members, each once; only m', v' (both) and w' used outside */
    mids[nm++] = u.m_new, mids[nm++] = u.v_new, mids[nm++] = root, mids[nm++] = head;
    if (nm != nmem) return false;
    for (int i = 0; i < nm; i++)
        for (int j = i + 1; j < nm; j++)
            if (mids[i] == mids[j]) return false;
    for (int i = 0; i < nm; i++) {
        bool out = used_outside(f, mids[i], k), stored = mids[i] == u.m_new || mids[i] == u.v_new;
        if (out != stored && mids[i] != root) return false;
    }
    /* the head reads no buffer the update writes (it runs while tiles are updated) */
    const int outs[3] = {u.m_new, u.v_new, root};
    for (int a = 0; a < 2; a++)
        if (reads_assigned(f, f->nodes[head].args[a], outs, 3)) return false;
    if (out) *out = u;
    return true;
}

/* After kernel k (members `group`, no head) formed: the matmul whose every
 * reader is a member joins it as its head where that makes a gemm-update
 * kernel (pass_gemm_adam). Returns whether one joined. */
static bool gemm_update_head(struct ir_func *f, int *const *users, int k, int **group) {
    for (size_t i = 0; i < vec_len(*group); i++) {
        const struct ir_node *m = &f->nodes[(*group)[i]];
        for (int a = 0; a < m->nargs; a++) {
            int x = m->args[a];
            struct ir_node *xn = &f->nodes[x];
            if (xn->kernel || xn->op != OP_MATMUL || !all_f32(f, x)) continue;
            bool inside = true;
            for (size_t u = 0; u < vec_len(users[x]) && inside; u++)
                inside = f->nodes[users[x][u]].kernel == k;
            for (size_t o = 0; o < vec_len(f->outputs) && inside; o++) inside = f->outputs[o].value != x;
            if (!inside) continue;
            xn->kernel = k;
            if (pass_gemm_adam(f, k, NULL)) {
                vec_push(*group, x);
                return true;
            }
            xn->kernel = 0;
        }
    }
    return false;
}

/* Groups the nodes of f into kernels numbered from `next`; returns how many. */
static int fuse_func(struct ir_func *f, int next, const struct pass_target *t) {
    /* next counts up as kernels form; they are renumbered at the end */
    int len = ir_func_len(f);
    if (len == 0) return 0;
    int *uses = calloc((size_t)len, sizeof *uses);
    if (!uses) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < len; i++)
        for (int a = 0; a < f->nodes[i].nargs; a++) uses[f->nodes[i].args[a]]++;
    for (size_t o = 0; o < vec_len(f->outputs); o++) uses[f->outputs[o].value]++;
    int **users = users_of(f);
    int formed = 0, *group = NULL;
    bool *rejected = NULL; /* vec: per kernel formed, from `next` on */
    for (int root = len - 1; root >= 0; root--) {
        struct ir_node *r = &f->nodes[root];
        if (r->kernel || !ir_kernel_ewise_op(r->op) || !all_f32(f, root)) continue;
        int k = next;
        bool has_head = false;
        int stored = 1; /* the root */
        vec_clear(group);
        vec_push(group, root);
        r->kernel = k;
        for (size_t g = 0; g < vec_len(group); g++) {
            const struct ir_node *m = &f->nodes[group[g]];
            if (ir_kernel_head_op(m->op)) continue; /* a head's operands stay outside */
            for (int a = 0; a < m->nargs; a++) {
                int x = m->args[a];
                struct ir_node *xn = &f->nodes[x];
                if (xn->kernel || !all_f32(f, x)) continue;
                if (!shape_equal(&xn->type.shape, &r->type.shape)) continue;
                if (xn->op == OP_GELU_DERIV) continue; /* joins only beside its gelu (siblings) */
                bool head = ir_kernel_head_op(xn->op), escapes = false;
                if (!(ir_kernel_ewise_op(xn->op) || (head && !has_head))) continue;
                if (head && uses[x] != 1) continue;
                xn->kernel = k; /* so that joins_after counts the user m as a member */
                int sib[4], ns = head ? 0 : siblings(f, users, x, k, root, sib, 4), more = 0;
                bool ok = head || joins_after(f, users, x, k, root, &escapes);
                for (int s = 0; s < ns && ok; s++) {
                    bool e = false;
                    ok = joins_after(f, users, sib[s], k, root, &e);
                    more += e;
                }
                if (ok && stored + escapes + more > t->fuse_max_outputs) ok = false;
                if (ok) {
                    vec_push(group, x);
                    for (int s = 0; s < ns; s++) vec_push(group, sib[s]);
                    if (count_inputs(f, group, k, t->fuse_max_inputs) > t->fuse_max_inputs) {
                        vec_hdr_(group)->len -= (size_t)(1 + ns);
                        ok = false;
                    }
                }
                if (!ok) {
                    xn->kernel = 0;
                    for (int s = 0; s < ns; s++) f->nodes[sib[s]].kernel = 0;
                    continue;
                }
                has_head |= head;
                stored += escapes + more;
            }
        }
        if (vec_len(group) < 2) {
            r->kernel = 0;
            continue;
        }
        if (t->fuse_gemm_update && !has_head) gemm_update_head(f, users, k, &group);
        /* A kernel the target cannot emit keeps its nodes (so that they join
         * no other kernel) until the end, when they go back on their own. */
        vec_push(rejected, !target_fuses(f, group, k, t));
        next++;
    }
    /* Number the kernels in the order of their roots (the first formed has
     * the last root). */
    int first = next - (int)vec_len(rejected), *number = calloc(vec_len(rejected) + 1, sizeof *number);
    if (!number) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int k = next - 1; k >= first; k--)
        if (!rejected[k - first]) number[k - first] = first + formed++;
    for (int i = 0; i < len; i++) {
        int k = f->nodes[i].kernel;
        if (k >= first && k < next) f->nodes[i].kernel = number[k - first];
    }
    free(number);
    if (t->fuse_pool) fuse_pools(f, users, uses);
    vec_free(rejected);
    vec_free(group);
    for (int i = 0; i < len; i++) vec_free(users[i]);
    free(users);
    free(uses);
    return formed;
}

/* Kernels already in the IR (IR text) that the target cannot emit whole, or
 * that are no kernel at all (one member, or a head as root), go back to single
 * nodes, so that every kernel left is one the target emits (a max-pool root
 * the target does not fuse leaves the rest a kernel). Returns how many. */
static int dissolve(struct ir_func *f, const struct pass_target *t) {
    int len = ir_func_len(f), undone = 0, *group = NULL;
    for (int root = len - 1; root >= 0 && !t->fuse_pool; root--)
        if (f->nodes[root].kernel > 0 && f->nodes[root].op == OP_MAXPOOL2D)
            f->nodes[root].kernel = 0, undone++;
    for (int root = len - 1; root >= 0; root--) {
        int k = f->nodes[root].kernel;
        if (k <= 0) continue;
        bool seen = false;
        for (int j = root + 1; j < len && !seen; j++) seen = f->nodes[j].kernel == k;
        if (seen) continue; /* not the root */
        vec_clear(group);
        for (int j = 0; j <= root; j++)
            if (f->nodes[j].kernel == k) vec_push(group, j);
        if (vec_len(group) >= 2 && !ir_kernel_head_op(f->nodes[root].op) && target_fuses(f, group, k, t))
            continue;
        for (size_t g = 0; g < vec_len(group); g++) f->nodes[group[g]].kernel = 0;
        undone++;
    }
    vec_free(group);
    return undone;
}

int pass_fuse(struct ir_module *m) {
    const struct pass_target *t = pass_target_get();
    int formed = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        struct ir_func *f = m->funcs[i];
        formed += dissolve(f, t);
        int next = 1;
        for (int id = 0; id < ir_func_len(f); id++)
            if (f->nodes[id].kernel >= next) next = f->nodes[id].kernel + 1;
        formed += fuse_func(f, next, t);
    }
    return formed;
}
