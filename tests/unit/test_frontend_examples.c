/* tests/unit/test_frontend_examples.c -- every example (examples/NAME.net) loads, lowers and
 * verifies, with the entry points, parameters (names, shapes, groups), training
 * settings and data bindings the language reference promises; plus small models
 * in memory for the layers the examples do not use (gru, rnn, dropout, ...). */
#include "frontend/frontend.h"
#include "test.h"

#include <string.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static struct ir_module *load(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/examples/%s", NETC_SOURCE_DIR, name);
    diag_reset();
    struct ir_module *m = fe_load(path);
    if (!m) {
        fprintf(stderr, "%s did not load\n", path);
        return NULL;
    }
    if (!ir_verify(m)) {
        fprintf(stderr, "%s does not verify\n", path);
        ir_module_free(m);
        return NULL;
    }
    return m;
}

static struct ir_module *load_text(const char *text) {
    diag_reset();
    struct ir_module *m = fe_load_text("test.net", text, strlen(text));
    if (m && !ir_verify(m)) {
        ir_module_free(m);
        return NULL;
    }
    return m;
}

static int count_kind(const struct ir_module *m, enum buf_kind kind, const char *group) {
    int n = 0;
    for (size_t i = 0; i < vec_len(m->buffers); i++)
        if (m->buffers[i].kind == kind &&
            (!group || (m->buffers[i].group && strcmp(m->buffers[i].group, group) == 0)))
            n++;
    return n;
}

/* The buffer has this kind and shape (dims end with 0; N is IR_DIM_N). */
static bool has_buf(struct ir_module *m, const char *name, enum buf_kind kind, const int64_t *dims) {
    struct ir_buffer *b = ir_buffer_find(m, name);
    if (!b || b->kind != kind) {
        fprintf(stderr, "no %s buffer %s\n", kind == BUF_PARAM ? "param" : "other", name);
        return false;
    }
    int r = 0;
    while (dims[r]) r++;
    if (b->type.shape.rank != r) return false;
    for (int i = 0; i < r; i++)
        if (b->type.shape.dim[i] != dims[i]) return false;
    return true;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__, 0})
#define N IR_DIM_N

static const char *funcs(const struct ir_module *m) {
    static char buf[256];
    buf[0] = '\0';
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        strcat(buf, i ? " " : "");
        strcat(buf, m->funcs[i]->name);
    }
    return buf;
}

static double optim_kw(const struct ir_optim *o, const char *kw) {
    for (int i = 0; i < o->nkw; i++)
        if (strcmp(o->kw[i], kw) == 0) return o->kwval[i];
    return -12345;
}

static double src_kw(const struct ir_source *s, const char *kw) {
    for (int i = 0; i < s->nkw; i++)
        if (strcmp(s->kw[i], kw) == 0) return s->kwval[i];
    return -12345;
}

static int count_op(const struct ir_func *f, enum op op) {
    int n = 0;
    for (int i = 0; i < ir_func_len(f); i++) n += f->nodes[i].op == op;
    return n;
}

static void test_mnist_cnn(void) {
    struct ir_module *m = load("mnist_cnn.net");
    CHECK(m != NULL);
    if (!m) return;
    CHECK(strcmp(funcs(m), "forward evaluate train_step") == 0);
    ASSERT(8, count_kind(m, BUF_PARAM, NULL));
    ASSERT(8, count_kind(m, BUF_PARAM, "classifier"));
    CHECK(has_buf(m, "classifier.conv2d0.w", BUF_PARAM, SHAPE(32, 1, 3, 3)));
    CHECK(has_buf(m, "classifier.conv2d0.b", BUF_PARAM, SHAPE(32)));
    CHECK(has_buf(m, "classifier.conv2d1.w", BUF_PARAM, SHAPE(64, 32, 3, 3)));
    CHECK(has_buf(m, "classifier.conv2d1.b", BUF_PARAM, SHAPE(64)));
    CHECK(has_buf(m, "classifier.dense0.w", BUF_PARAM, SHAPE(1600, 128)));
    CHECK(has_buf(m, "classifier.dense0.b", BUF_PARAM, SHAPE(128)));
    CHECK(has_buf(m, "classifier.dense1.w", BUF_PARAM, SHAPE(128, 10)));
    CHECK(has_buf(m, "classifier.dense1.b", BUF_PARAM, SHAPE(10)));
    CHECK(has_buf(m, "image", BUF_INPUT, SHAPE(N, 1, 28, 28)));
    /* Glorot uniform with Keras fans: conv fan_in = 1*3*3, fan_out = 32*3*3. */
    struct ir_buffer *w = ir_buffer_find(m, "classifier.conv2d0.w");
    ASSERT(INIT_UNIFORM, w->init.kind);
    ASSERT_NEAR(sqrt(6.0 / (9 + 288)), w->init.b, 1e-9);
    ASSERT(64, m->train.batch);
    ASSERT(1, m->train.epochs);
    struct ir_func *t = ir_func_find(m, "train_step");
    CHECK(t && t->mode == MODE_TRAIN && strcmp(t->loss, "loss") == 0);
    CHECK(t && strcmp(t->optim.kind, "adam") == 0 && t->optim.nkw == 5);
    ASSERT_NEAR(0.001, optim_kw(&t->optim, "lr"), 1e-12);
    ASSERT_NEAR(1e-7, optim_kw(&t->optim, "eps"), 1e-15);
    ASSERT(0, vec_len(t->update));
    CHECK(ir_output_find(t, "accuracy") >= 0);
    struct ir_func *f = ir_func_find(m, "forward");
    CHECK(f && vec_len(f->outputs) == 1 && strcmp(f->outputs[0].name, "logits") == 0);
    struct ir_func *e = ir_func_find(m, "evaluate");
    CHECK(e && ir_output_find(e, "loss") >= 0 && ir_output_find(e, "accuracy") >= 0);
    struct ir_buffer *img = ir_buffer_find(m, "image"), *lab = ir_buffer_find(m, "label");
    CHECK(strcmp(img->data.kind, "idx") == 0 && strstr(img->data.path, "train-images-idx3-ubyte.gz"));
    ASSERT_NEAR(1.0 / 255, src_kw(&img->data, "scale"), 1e-12);
    CHECK(strstr(img->test.path, "t10k-images"));
    CHECK(strstr(lab->data.path, "train-labels") && lab->data.nkw == 0); /* no scale on labels */
    ir_module_free(m);
}

static void test_dcgan(void) {
    struct ir_module *m = load("dcgan.net");
    CHECK(m != NULL);
    if (!m) return;
    CHECK(strcmp(funcs(m), "forward evaluate d_step g_step") == 0);
    /* D is called three times; only the first call made parameters. */
    ASSERT(8, count_kind(m, BUF_PARAM, "D"));
    ASSERT(10, count_kind(m, BUF_PARAM, "G"));
    ASSERT(18, count_kind(m, BUF_PARAM, NULL));
    ASSERT(6, count_kind(m, BUF_STATE, NULL));
    CHECK(has_buf(m, "G.dense0.w", BUF_PARAM, SHAPE(100, 6272)));
    CHECK(has_buf(m, "G.conv2d_transpose0.w", BUF_PARAM, SHAPE(128, 64, 4, 4)));
    CHECK(has_buf(m, "D.dense0.w", BUF_PARAM, SHAPE(6272, 1)));
    CHECK(has_buf(m, "D.batchnorm0.running_var", BUF_STATE, SHAPE(128)));
    struct ir_buffer *z = ir_buffer_find(m, "z"), *real = ir_buffer_find(m, "real");
    CHECK(strcmp(z->data.kind, "normal") == 0 && z->data.nargs == 2 && z->data.args[1] == 1);
    CHECK(strcmp(real->data.kind, "idx") == 0);
    ASSERT_NEAR(2.0 / 255, src_kw(&real->data, "scale"), 1e-12);
    ASSERT_NEAR(-1, src_kw(&real->data, "shift"), 1e-12);
    struct ir_func *d = ir_func_find(m, "d_step"), *g = ir_func_find(m, "g_step");
    CHECK(d && g);
    if (!d || !g) {
        ir_module_free(m);
        return;
    }
    CHECK(vec_len(d->update) == 1 && strcmp(d->update[0], "D") == 0);
    CHECK(vec_len(g->update) == 1 && strcmp(g->update[0], "G") == 0);
    CHECK(strcmp(d->loss, "d_loss") == 0 && strcmp(g->loss, "g_loss") == 0);
    ASSERT_NEAR(0.5, optim_kw(&d->optim, "beta1"), 1e-12);
    ASSERT_NEAR(2e-4, optim_kw(&g->optim, "lr"), 1e-12);
    ASSERT(1, count_op(d, OP_STOP_GRADIENT));
    /* Running statistics are updated once per buffer: G's two and D's one batchnorm. */
    ASSERT(6, count_op(d, OP_ASSIGN));
    ASSERT(6, count_op(g, OP_ASSIGN));
    ASSERT(0, count_op(ir_func_find(m, "forward"), OP_ASSIGN));
    struct ir_func *f = ir_func_find(m, "forward");
    CHECK(vec_len(f->outputs) == 1 && strcmp(f->outputs[0].name, "sample") == 0);
    ir_module_free(m);
}

static void test_lstm(void) {
    struct ir_module *m = load("lstm.net");
    CHECK(m != NULL);
    if (!m) return;
    CHECK(has_buf(m, "lstm.lstm0.weight_ih_l0", BUF_PARAM, SHAPE(200, 3)));
    CHECK(has_buf(m, "lstm.lstm0.weight_hh_l0", BUF_PARAM, SHAPE(200, 50)));
    CHECK(has_buf(m, "lstm.lstm0.bias_ih_l0", BUF_PARAM, SHAPE(200)));
    CHECK(has_buf(m, "lstm.lstm0.bias_hh_l0", BUF_PARAM, SHAPE(200)));
    CHECK(has_buf(m, "lstm.dense0.w", BUF_PARAM, SHAPE(50, 3)));
    ASSERT(6, count_kind(m, BUF_PARAM, "lstm"));
    struct ir_func *f = ir_func_find(m, "forward");
    /* One recurrent op over the 10 steps, then the last step's h: two slices. */
    ASSERT(1, count_op(f, OP_RNN));
    ASSERT(2, count_op(f, OP_SLICE));
    CHECK(ir_output_find(f, "probabilities") >= 0);
    struct ir_buffer *x = ir_buffer_find(m, "x"), *y = ir_buffer_find(m, "y");
    /* Relative data paths resolve against the .net file's directory. */
    CHECK(strcmp(x->data.kind, "npy") == 0 && x->data.path[0] == '/' &&
          ends_with(x->data.path, "/examples/data/sequences_x.npy"));
    CHECK(ends_with(y->data.path, "/examples/data/sequences_y.npy") &&
          ends_with(y->test.path, "/sequences_test_y.npy"));
    ASSERT(10, m->train.batch);
    ir_module_free(m);
}

static void test_small_examples(void) {
    struct ir_module *m = load("linear_regression.net");
    CHECK(m != NULL);
    if (m) {
        CHECK(has_buf(m, "w", BUF_PARAM, SHAPE(1, 1)) && has_buf(m, "b", BUF_PARAM, SHAPE(1)));
        CHECK(strcmp(ir_buffer_find(m, "w")->group, "linear_regression") == 0);
        ASSERT(INIT_NORMAL, ir_buffer_find(m, "w")->init.kind);
        struct ir_buffer *x = ir_buffer_find(m, "x"), *y = ir_buffer_find(m, "y");
        CHECK(strcmp(x->data.kind, "csv") == 0);
        ASSERT(0, (int)src_kw(&x->data, "column"));
        ASSERT(1, (int)src_kw(&y->data, "column"));
        struct ir_func *t = ir_func_find(m, "train_step");
        CHECK(t && strcmp(t->optim.kind, "sgd") == 0);
        ASSERT_NEAR(0.01, optim_kw(&t->optim, "lr"), 1e-12);
        CHECK(ir_output_find(ir_func_find(m, "forward"), "y_hat") >= 0);
        ir_module_free(m);
    }
    m = load("mlp_regression.net");
    CHECK(m != NULL);
    if (m) {
        ASSERT(4, count_kind(m, BUF_PARAM, NULL));
        CHECK(has_buf(m, "mlp_regression.dense0.w", BUF_PARAM, SHAPE(3, 10)));
        ASSERT(3, (int)src_kw(&ir_buffer_find(m, "y")->data, "column"));
        ir_module_free(m);
    }
    m = load("mlp.net");
    CHECK(m != NULL);
    if (m) {
        ASSERT(6, count_kind(m, BUF_PARAM, NULL));
        CHECK(has_buf(m, "classifier.dense0.w", BUF_PARAM, SHAPE(784, 256)));
        ir_module_free(m);
    }
    m = load("lenet.net");
    CHECK(m != NULL);
    if (m) {
        ASSERT(10, count_kind(m, BUF_PARAM, NULL));
        CHECK(has_buf(m, "lenet5.conv2d0.w", BUF_PARAM, SHAPE(6, 1, 5, 5)));
        CHECK(has_buf(m, "lenet5.dense0.w", BUF_PARAM, SHAPE(400, 120)));
        struct ir_func *t = ir_func_find(m, "train_step");
        CHECK(t && strcmp(t->optim.kind, "sgd") == 0);
        ASSERT_NEAR(0.9, optim_kw(&t->optim, "momentum"), 1e-12);
        ir_module_free(m);
    }
}

/* Layers and features the examples do not exercise. */
static void test_features(void) {
    struct ir_module *m = load_text(
        "model feats\n"
        "input seq : f32[N, 6, 4]\n"
        "input img : f32[N, 3, 16, 16]\n"
        "input t : i32[N]\n"
        "h = seq -> gru(8, return_sequences=true) -> rnn(5, activation=\"relu\")\n"
        "g = seq -> lstm(7, return_sequences=true, unit_forget_bias=true)\n"
        "c = img -> conv2d(4, 3, padding=\"same\", stride=2) batchnorm dropout(0.5)\n"
        "c2 = c -> upsample(2) avgpool(2) -> maxpool(kernel=2, stride=1, padding=1) global_avgpool\n"
        "s = concat(1, h, c2) -> dense(3, bias=false)\n"
        "k = mean(transpose(s), 1) * s.shape[1] + sum(s, 0, keepdims=true)\n"
        "loss l = cross_entropy(s, t) + 0.1 * mean(abs(g)) + mean(k)\n"
        "metric accuracy(s, t)\n"
        "metric m2 = mean(softmax(s, axis=1) - exp(log_softmax(s)))\n"
        "output p = (s -> softmax)\n"
        "train {\n"
        "  optimizer rmsprop(lr=0.01)\n"
        "  schedule step(every=2, gamma=0.5)\n"
        "  early_stopping(patience=2)\n"
        "  seed 7\n"
        "}\n");
    CHECK(m != NULL);
    if (!m) return;
    CHECK(has_buf(m, "feats.gru0.weight_ih_l0", BUF_PARAM, SHAPE(24, 4)));
    /* lstm(7, unit_forget_bias=true): Keras' biases, 1 on the forget gate's slice. */
    struct ir_buffer *fb = ir_buffer_find(m, "feats.lstm0.bias_ih_l0");
    CHECK(fb && fb->init.kind == INIT_RANGE && fb->init.a == 7 && fb->init.b == 14);
    CHECK(ir_buffer_find(m, "feats.lstm0.bias_hh_l0") &&
          ir_buffer_find(m, "feats.lstm0.bias_hh_l0")->init.kind == INIT_ZEROS);
    CHECK(ir_buffer_find(m, "feats.gru0.bias_ih_l0") &&
          ir_buffer_find(m, "feats.gru0.bias_ih_l0")->init.kind == INIT_UNIFORM);
    CHECK(has_buf(m, "feats.gru0.bias_hh_l0", BUF_PARAM, SHAPE(24)));
    CHECK(has_buf(m, "feats.rnn0.weight_hh_l0", BUF_PARAM, SHAPE(5, 5)));
    CHECK(has_buf(m, "feats.conv2d0.w", BUF_PARAM, SHAPE(4, 3, 3, 3)));
    CHECK(ir_buffer_find(m, "feats.dense0.b") == NULL);
    ASSERT(2, m->train.patience);
    ASSERT(7, m->train.seed);
    struct ir_func *t = ir_func_find(m, "train_step");
    CHECK(t && strcmp(t->optim.kind, "rmsprop") == 0 && strcmp(t->optim.schedule.kind, "step") == 0);
    CHECK(t && count_op(t, OP_DROPOUT) == 1 && count_op(ir_func_find(m, "forward"), OP_DROPOUT) == 0);
    CHECK(t && ir_output_find(t, "l") >= 0 && ir_output_find(t, "accuracy") >= 0 &&
          ir_output_find(t, "m2") >= 0);
    /* "same" with stride 2 on 16: out 8, total pad 1 -> [0, 0, 1, 1]. */
    struct ir_func *f = ir_func_find(m, "forward");
    for (int i = 0; f && i < ir_func_len(f); i++)
        if (f->nodes[i].op == OP_CONV2D) {
            const int64_t *pad = ir_attr_v(&f->nodes[i], ATTR_PAD, NULL);
            CHECK(pad[0] == 0 && pad[1] == 0 && pad[2] == 1 && pad[3] == 1);
        }
    ir_module_free(m);

    /* Shapes, errors and a failed load leave nothing behind (LSan checks). */
    FILE *null = fopen("/dev/null", "w");
    diag_set_stream(null);
    CHECK(load_text("model x\ninput a : f32[N, 4]\noutput y = a -> dense(3) -> conv2d(1, 1)\n") == NULL);
    CHECK(load_text("model x\nnet f(a) {\n  a\n") == NULL);
    CHECK(load_text("") == NULL);
    CHECK(fe_load("/nonexistent/x.net") == NULL);
    diag_set_stream(NULL);
    if (null) fclose(null);
}

int main(void) {
    test_mnist_cnn();
    test_dcgan();
    test_lstm();
    test_small_examples();
    test_features();
    diag_free();
    TEST_DONE();
}
