// check-cuda: the CUDA backend against the CPU reference, on a GPU machine (`make check`).
//
//   1. One step from the same weights and batch, for float32 matmuls (tc_cuda_fp32_backend),
//      TF32 matmuls (tc_cuda_backend) and bf16 linear layers (tc_cuda_bf16_backend): loss,
//      logits, probabilities, every gradient tensor, the gradient norm, and an AdamW step from
//      identical gradients.
//   2. A 50-step training run through the trainer (data, lr schedule, clipping, AdamW) on
//      CPU and on the GPU: the loss curves must track each other.
//   3. Checkpoints across backends: GPU state loads on CPU byte for byte, and back.
//
// Each line prints the max abs error, the max error relative to the tensor's largest
// entry, the relative L2 error ||gpu - cpu|| / ||cpu||, the tolerance and PASS/FAIL; the exit
// status is 0 only when every line passes.
//
// Tolerances: an error model, then calibrated on an H200 (2026-11-28, default shape below;
// docs/trainer.md has every measured value). Each is about 10x the largest error measured
// there, and wide enough for the emulator (make emulated-check), whose TF32 truncates.
// - float32 matmuls: both sides round every operation to float32 (unit roundoff u = 6e-8) and
//   differ only in summation order, exp/tanh implementations (CPU polynomial, ~2e-7) and
//   fused multiply-adds: dot products of K <= 2048 terms agree to ~sqrt(K) u ~ 3e-6. Measured:
//   every tensor <= 2.1e-6 (max/max|ref|) and <= 1.6e-6 (rel L2), loss identical, 50-step
//   curve within 9.5e-7 nats. Allowed: 2e-5 on every tensor, 1e-5 nats on the loss and on the
//   curve. A wrong index or a missing term gives errors of 1e-3 or more.
// - TF32 matmuls: operands rounded to a 10-bit mantissa (u = 2^-11 = 4.9e-4) before float32
//   accumulation. Measured: tensors <= 6.6e-4 (max) and <= 5.3e-4 (rel L2), loss 4.3e-6 nats,
//   curve 2.3e-4 nats (the emulator: 3.3e-3, 6.7e-6 and 1.9e-4; its next-step loss after the
//   checkpoint 1.5e-4). Allowed: 1e-2 on tensors, 5e-4 nats on the loss, 2e-3 on the curve.
// - bf16 linear layers: the linear layers' operands rounded to bf16 (u = 2^-9 = 2e-3, round to
//   nearest), attention in TF32. Measured: tensors <= 6.3e-3 (max) and <= 4.5e-3 (rel L2),
//   loss 3.0e-5 nats, curve 4.3e-4 nats. Allowed: 3e-2, 5e-4 nats and 5e-3 nats.
// - AdamW from identical gradients: the same formula on both sides, only contraction into
//   FMAs differs: |param diff| <= 1e-3 lr (a parameter's ulp is at most 1.2e-7 = 1.2e-4 lr for
//   |param| < 1 and lr = 1e-3; measured 6.0e-5 lr).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_backend.h"
#include "model_layout.h"
#include "trainer.h"

typedef struct {
    const char *name;
    const tc_model_backend *backend;
    double loss;    // |loss difference|, nats
    double tensor;  // rel L2 and max error / max |ref| of logits, probabilities, gradients
    double adamw;   // max |param difference| / lr after one AdamW step from identical gradients
    double curve;   // max |loss difference| over the training run, nats
} tolerances;

typedef struct {
    int layers, width, heads, batch, seq, steps, threads;
} shape;

#define MAX_BACKENDS 3

static int checks = 0, failures = 0;

static int verdict(int ok) {
    checks++;
    if (!ok) failures++;
    return ok;
}

typedef struct {
    double max_abs, max_ref, rel_l2;
} errors;

static errors compare(const float *ref, const float *got, size_t n) {
    double sq_err = 0.0, sq_ref = 0.0;
    errors e = {0.0, 0.0, 0.0};
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= e.max_abs)) e.max_abs = d;  // NaN propagates into max_abs
        if (fabs((double)ref[i]) > e.max_ref) e.max_ref = fabs((double)ref[i]);
        sq_err += d * d;
        sq_ref += (double)ref[i] * ref[i];
    }
    e.rel_l2 = sq_ref > 0 ? sqrt(sq_err / sq_ref) : sqrt(sq_err);
    return e;
}

// One line for one tensor; PASS when both relative measures are within tol.
static void report_tensor(const char *what, const float *ref, const float *got, size_t n, double tol) {
    errors e = compare(ref, got, n);
    double rel_max = e.max_ref > 0 ? e.max_abs / e.max_ref : e.max_abs;
    int ok = verdict(rel_max <= tol && e.rel_l2 <= tol);
    printf("  %-16s %12.3e %14.3e %12.3e %10.1e   %s\n", what, e.max_abs, rel_max, e.rel_l2, tol, ok ? "PASS" : "FAIL");
}

static void report_scalar(const char *what, double ref, double got, double tol, int relative) {
    double d = fabs(got - ref), measure = relative ? d / fmax(fabs(ref), 1e-30) : d;
    int ok = verdict(measure <= tol);
    printf("  %-16s cpu %.7f gpu %.7f  %s diff %.3e (tolerance %.1e)   %s\n", what, ref, got,
           relative ? "rel" : "abs", measure, tol, ok ? "PASS" : "FAIL");
}

static tc_config make_config(const shape *s) {
    tc_config c;
    tc_config_defaults(&c);
    c.n_layer = s->layers;
    c.n_embd = s->width;
    c.n_head = s->heads;
    c.context = s->seq;
    c.batch_size = s->batch;
    c.seq_len = s->seq;
    c.steps = s->steps;
    c.warmup_steps = 5;
    c.threads = s->threads;
    c.log_every = 0;
    return c;
}

// ------------------------------------------------------------------------------------------
// 1. One step

static int one_step(const shape *s, const tolerances *tol) {
    char err[TC_ERR_MAX] = "";
    printf("\n== one step, %s ==\n", tol->name);
    tc_model *cpu = tc_model_create(s->layers, s->width, s->heads, s->seq, 1337, s->threads);
    tc_model *gpu = tc_model_create_on(tol->backend, s->layers, s->width, s->heads, s->seq, 1337, s->threads, err,
                                       sizeof err);
    if (!cpu || !gpu) {
        printf("  cannot create the models: %s\n", gpu ? "CPU model" : err);
        verdict(0);
        tc_model_free(cpu);
        tc_model_free(gpu);
        return -1;
    }
    printf("  device: %s\n", tc_model_device(gpu));
    size_t P = tc_model_num_params(cpu), sizes[TC_P_COUNT];
    tc_param_sizes(s->layers, s->width, s->seq, sizes);

    // Same seed, same initialisation, bit for bit (the GPU's weights went up and came back).
    int same_init = memcmp(tc_model_params(cpu), tc_model_params(gpu), P * sizeof(float)) == 0;
    printf("  %-16s %s   %s\n", "initial weights", same_init ? "identical" : "differ", verdict(same_init) ? "PASS" : "FAIL");

    // Move LayerNorm gains and all biases off 1 and 0 so that every path carries signal.
    tc_rng r;
    tc_rng_seed(&r, 99);
    float *pc = tc_model_params(cpu);
    size_t off = 0;
    for (int k = 0; k < TC_P_COUNT; k++) {
        if (!tc_param_decays(k))
            for (size_t i = off; i < off + sizes[k]; i++) pc[i] += 0.05f * tc_rng_normal(&r);
        off += sizes[k];
    }
    memcpy(tc_model_params(gpu), pc, P * sizeof(float));

    tc_config c = make_config(s);
    tc_data *data = tc_data_open(&c, 0, 1, err, sizeof err);
    size_t N = (size_t)s->batch * s->seq;
    uint8_t *inputs = malloc(N), *targets = malloc(N);
    if (!data || !inputs || !targets || tc_data_next_batch(data, inputs, targets, s->batch, s->seq, err, sizeof err)) {
        printf("  data: %s\n", err);
        verdict(0);
        return -1;
    }

    printf("  %-16s %12s %14s %12s %10s\n", "", "max abs err", "max/max|ref|", "rel L2 err", "tolerance");
    float lc = tc_model_forward(cpu, inputs, targets, s->batch, s->seq);
    float lg = tc_model_forward(gpu, inputs, targets, s->batch, s->seq);
    report_scalar("loss", lc, lg, tol->loss, 0);
    report_tensor("logits", tc_model_logits(cpu), tc_model_logits(gpu), N * TC_VOCAB, tol->tensor);
    report_tensor("probs", tc_model_probs(cpu), tc_model_probs(gpu), N * TC_VOCAB, tol->tensor);

    tc_model_zero_grad(cpu);
    tc_model_zero_grad(gpu);
    tc_model_backward(cpu);
    tc_model_backward(gpu);
    const float *gc = tc_model_grads(cpu), *gg = tc_model_grads(gpu);
    off = 0;
    for (int k = 0; k < TC_P_COUNT; k++) {
        char what[32];
        snprintf(what, sizeof what, "grad %s", tc_param_name(k));
        report_tensor(what, gc + off, gg + off, sizes[k], tol->tensor);
        off += sizes[k];
    }
    report_tensor("grad (all)", gc, gg, P, tol->tensor);

    // AdamW from identical gradients, with clipping active (max norm half the norm) so that the
    // norm and the scaling kernels run too.
    memcpy(tc_model_grads(gpu), tc_model_grads(cpu), P * sizeof(float));
    float norm_c = tc_model_clip_grad(cpu, 0.0f), norm_g = tc_model_clip_grad(gpu, 0.0f);
    report_scalar("grad norm", norm_c, norm_g, 1e-6, 1);
    tc_model_clip_grad(cpu, 0.5f * norm_c);
    tc_model_clip_grad(gpu, 0.5f * norm_c);
    float lr = 1e-3f;
    tc_model_update(cpu, lr, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
    tc_model_update(gpu, lr, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
    errors e = compare(tc_model_params(cpu), tc_model_params(gpu), P);
    int ok = verdict(e.max_abs / lr <= tol->adamw);
    printf("  %-16s max |param diff| %.3e = %.3e lr (tolerance %.1e lr)   %s\n", "AdamW step", e.max_abs,
           e.max_abs / lr, tol->adamw, ok ? "PASS" : "FAIL");
    report_tensor("AdamW m", tc_model_adam_m(cpu), tc_model_adam_m(gpu), P, 1e-5);
    report_tensor("AdamW v", tc_model_adam_v(cpu), tc_model_adam_v(gpu), P, 1e-5);

    free(inputs);
    free(targets);
    tc_data_free(data);
    tc_model_free(cpu);
    tc_model_free(gpu);
    return 0;
}

// ------------------------------------------------------------------------------------------
// 2. Loss curves through the trainer

static int run_curve(const tc_config *c, float *losses) {
    char err[TC_ERR_MAX];
    tc_trainer *t = tc_trainer_create(c, err, sizeof err);
    if (!t) {
        printf("  trainer: %s\n", err);
        return -1;
    }
    for (long i = 0; i < c->steps; i++)
        if (tc_trainer_step(t, &losses[i], err, sizeof err) != 0) {
            printf("  trainer: %s\n", err);
            tc_trainer_free(t);
            return -1;
        }
    tc_trainer_free(t);
    return 0;
}

static void loss_curves(const shape *s, const tolerances *tols, int ntols) {
    printf("\n== %d-step loss curves through the trainer (data, schedule, clipping, AdamW) ==\n", s->steps);
    tc_config c = make_config(s);
    float *ref = calloc((size_t)s->steps, sizeof(float));
    float *got[MAX_BACKENDS];
    int ok_runs[MAX_BACKENDS];
    if (run_curve(&c, ref) != 0) {
        verdict(0);
        return;
    }
    for (int k = 0; k < ntols; k++) {
        got[k] = calloc((size_t)s->steps, sizeof(float));
        c.backend = tols[k].backend;
        ok_runs[k] = got[k] && run_curve(&c, got[k]) == 0;
    }
    printf("  %6s %10s", "step", "cpu");
    for (int k = 0; k < ntols; k++) printf(" %12s %10s", tols[k].backend->name, "diff");
    printf("\n");
    double worst[MAX_BACKENDS] = {0.0};
    for (int i = 0; i < s->steps; i++) {
        int show = i < 5 || (i + 1) % 5 == 0;
        if (show) printf("  %6d %10.5f", i + 1, ref[i]);
        for (int k = 0; k < ntols; k++) {
            double d = fabs((double)got[k][i] - ref[i]);
            if (!(d <= worst[k])) worst[k] = d;
            if (show) printf(" %12.5f %10.2e", got[k][i], d);
        }
        if (show) printf("\n");
    }
    for (int k = 0; k < ntols; k++) {
        int ok = verdict(ok_runs[k] && worst[k] <= tols[k].curve);
        printf("  %-16s max |loss diff| %.3e over %d steps (tolerance %.1e)   %s\n", tols[k].backend->name, worst[k],
               s->steps, tols[k].curve, ok ? "PASS" : "FAIL");
    }
    free(ref);
    for (int k = 0; k < ntols; k++) free(got[k]);
}

// ------------------------------------------------------------------------------------------
// 3. Checkpoints across backends

static int transfer(tc_trainer *from, tc_trainer *to, const char *label) {
    char err[TC_ERR_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    if (tc_trainer_serialize(from, &buf, &len) != 0 || tc_trainer_deserialize(to, buf, len, err, sizeof err) != 0) {
        printf("  %s: %s\n", label, err);
        free(buf);
        return verdict(0);
    }
    free(buf);
    char a[65], b[65];
    tc_trainer_params_digest(from, a);
    tc_trainer_params_digest(to, b);
    int ok = verdict(strcmp(a, b) == 0 && tc_trainer_step_count(from) == tc_trainer_step_count(to));
    printf("  %-28s step %ld, weights sha256 %.16s... %s   %s\n", label, tc_trainer_step_count(to), b,
           ok ? "identical" : "DIFFER", ok ? "PASS" : "FAIL");
    return ok;
}

static void checkpoints(const shape *s, const tolerances *tol) {
    printf("\n== checkpoints across backends (%s) ==\n", tol->backend->name);
    char err[TC_ERR_MAX];
    tc_config cc = make_config(s), gc = cc;
    gc.backend = tol->backend;
    tc_trainer *g1 = tc_trainer_create(&gc, err, sizeof err), *c1 = tc_trainer_create(&cc, err, sizeof err);
    tc_trainer *g2 = tc_trainer_create(&gc, err, sizeof err);
    float lg = 0.0f, lc = 0.0f;
    if (!g1 || !c1 || !g2) {
        printf("  trainer: %s\n", err);
        verdict(0);
        goto out;
    }
    for (int i = 0; i < 10; i++)
        if (tc_trainer_step(g1, &lg, err, sizeof err) != 0) {
            printf("  trainer: %s\n", err);
            verdict(0);
            goto out;
        }
    if (!transfer(g1, c1, "GPU -> CPU after 10 steps")) goto out;
    // One more step on each from the same state and the same next batch (the cursor travels
    // in the checkpoint): the losses agree like the one-step check's.
    if (tc_trainer_step(g1, &lg, err, sizeof err) != 0 || tc_trainer_step(c1, &lc, err, sizeof err) != 0) {
        printf("  trainer: %s\n", err);
        verdict(0);
        goto out;
    }
    report_scalar("next step loss", lc, lg, tol->loss, 0);
    transfer(c1, g2, "CPU -> GPU after 11 steps");
out:
    tc_trainer_free(g1);
    tc_trainer_free(c1);
    tc_trainer_free(g2);
}

static int arg_int(int argc, char **argv, const char *name, int fallback) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return atoi(argv[i + 1]);
    return fallback;
}

int main(int argc, char **argv) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    shape s = {
        .layers = arg_int(argc, argv, "--layers", 4),
        .width = arg_int(argc, argv, "--width", 256),
        .heads = arg_int(argc, argv, "--heads", 4),
        .batch = arg_int(argc, argv, "--batch", 8),
        .seq = arg_int(argc, argv, "--seq", 256),
        .steps = arg_int(argc, argv, "--steps", 50),
        .threads = arg_int(argc, argv, "--threads", cpus > 16 ? 16 : (cpus < 1 ? 1 : (int)cpus)),
    };
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: check-cuda [--layers 4] [--width 256] [--heads 4] [--batch 8] [--seq 256] [--steps 50] "
                   "[--threads N]\n");
            return 0;
        }
    if (s.layers < 1 || s.width < 1 || s.heads < 1 || s.width % s.heads || s.batch < 1 || s.seq < 1 || s.steps < 2 ||
        s.threads < 1) {
        fprintf(stderr, "check-cuda: bad shape (width must be divisible by heads, steps >= 2)\n");
        return 2;
    }
    printf("check-cuda: %d layers, width %d, %d heads, batch %d x %d, %d steps; CPU reference on %d threads\n",
           s.layers, s.width, s.heads, s.batch, s.seq, s.steps, s.threads);
    const tolerances tols[MAX_BACKENDS] = {
        {"float32 matmuls", &tc_cuda_fp32_backend, 1e-5, 2e-5, 1e-3, 1e-5},
        {"TF32 matmuls", &tc_cuda_backend, 5e-4, 1e-2, 1e-3, 2e-3},
        {"bf16 linear layers", &tc_cuda_bf16_backend, 5e-4, 3e-2, 1e-3, 5e-3},
    };
    for (int k = 0; k < MAX_BACKENDS; k++)
        if (one_step(&s, &tols[k]) != 0) {
            printf("\nFAIL: no CUDA model could be created, nothing was compared\n");
            return 1;
        }
    loss_curves(&s, tols, MAX_BACKENDS);
    checkpoints(&s, &tols[1]);
    printf("\n%s: %d of %d checks passed\n", failures ? "FAIL" : "PASS", checks - failures, checks);
    return failures ? 1 : 0;
}
