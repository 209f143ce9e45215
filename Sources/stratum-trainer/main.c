// stratum-trainer: trains the bundled byte-level GPT from a YAML config.
//
//   stratum-trainer --config trainer.yaml [--set train.lr=3e-4 ...] [--steps N] [--no-resume]
//
// Resumes from the newest complete checkpoint automatically, prints one progress line per
// train.log_every steps, serves /metrics and /healthz when metrics.port is set, and on
// SIGTERM/SIGINT writes a checkpoint before exiting (preemption).
//
// The same file is compiled a second time by Sources/TrainerCUDA/Makefile with
// STRATUM_TRAINER_CUDA defined: that binary, stratum-trainer-cuda, runs the model on GPUs
// and shares everything else (config, data, checkpoints, metrics, DiLoCo) with this one.
#include <signal.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer.h"

#ifdef STRATUM_TRAINER_CUDA
#include "cuda_backend.h"
#define TRAINER_NAME "stratum-trainer-cuda"
#define TRAINER_WHERE "on the node's NVIDIA GPUs"
#define TRAINER_BACKEND (&tc_cuda_backend)
#else
#define TRAINER_NAME "stratum-trainer"
#define TRAINER_WHERE "on CPU"
#define TRAINER_BACKEND NULL
#endif

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: " TRAINER_NAME " --config FILE [options]\n"
            "\n"
            "Trains Stratum's byte-level GPT " TRAINER_WHERE ". Resumes from the newest complete\n"
            "checkpoint in checkpoint.dir unless --no-resume is given.\n"
            "\n"
            "options:\n"
            "  --config FILE        YAML config (sections: model, train, data, checkpoint, s3, metrics, diloco, p2p, dp)\n"
            "  --set KEY=VALUE      override one key, e.g. --set train.lr=3e-4 (repeatable)\n"
            "  --steps N            same as --set train.steps=N (the length of the lr schedule)\n"
            "  --until-step N       stop (with a checkpoint) once step N is reached, schedule unchanged\n"
            "  --no-resume          start from scratch even if checkpoints exist\n"
            "  --quiet              no progress lines\n"
#ifdef STRATUM_TRAINER_CUDA
            "  --matmul KIND        tf32 (default), bf16 or fp32: the matmuls' arithmetic (bf16: the\n"
            "                       linear layers' operands rounded to bf16, attention in TF32);\n"
            "                       weights, gradients and AdamW moments stay float32 in every case\n"
#endif
            "  --help               this text\n"
            "\n"
            "       stratum-trainer allreduce-check --world N --rank R [...]   the interconnect check (see its --help)\n"
            "\n"
            "config keys:\n");
    tc_config_print_keys(out);
    fprintf(out, "\nS3 credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.\n");
}

// Starts the metrics server when metrics.port or metrics.port_file asks for one; with a port
// file, port 0 means any free port, and the port it got is written to the file (atomically, by
// rename) for whoever reads the node's metrics. 0, or -1 after printing why.
static int start_metrics(const tc_config *cfg, tc_metrics **out) {
    *out = NULL;
    if (cfg->metrics_port <= 0 && !cfg->metrics_port_file[0]) return 0;
    char err[TC_ERR_MAX];
    tc_metrics *m = tc_metrics_start(cfg->metrics_port, 0, err, sizeof err);
    if (!m) {
        fprintf(stderr, "stratum-trainer: %s\n", err);
        return -1;
    }
    if (cfg->metrics_port_file[0]) {
        char tmp[TC_PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", cfg->metrics_port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", tc_metrics_port(m)) < 0 || fclose(f) != 0 || rename(tmp, cfg->metrics_port_file) != 0) {
            fprintf(stderr, "stratum-trainer: cannot write the metrics port to %s ('metrics.port_file'): %s\n", cfg->metrics_port_file, strerror(errno));
            tc_metrics_stop(m);
            return -1;
        }
    }
    if (cfg->metrics_include[0]) tc_metrics_include(m, cfg->metrics_include);
    *out = m;
    return 0;
}

// `stratum-trainer allreduce-check`: the interconnect check, one rank of it.
static int run_allreduce_check(int argc, char **argv) {
    tc_allreduce_spec spec = {.world = 0, .rank = -1, .port = 29510, .bytes = 64L << 20, .iterations = 5, .timeout_s = 120};
    const char *output = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: stratum-trainer allreduce-check --world N --rank R [--coordinator HOST] [--port P | --port-file F]\n"
                   "                                        [--bytes B] [--iterations K] [--timeout S] [--output FILE]\n"
                   "\n"
                   "Times a ring all-reduce of B bytes (default 64 MiB) between N nodes over TCP, K times after one\n"
                   "untimed run, checks the result, and prints the bus bandwidth (algorithm bandwidth x 2(N-1)/N).\n"
                   "Rank 0 listens on port P (default 29510) for the others, which connect to it at HOST; with\n"
                   "--port-file, rank 0 listens on any free port and writes it to F, where the others read it. The whole\n"
                   "check gives up after S seconds (default 120). --output writes the result as Prometheus text,\n"
                   "which the trainer serves with its own metrics (metrics.include). Exit status 0: the check passed.\n");
            return 0;
        }
        if (!v) {
            fprintf(stderr, "stratum-trainer allreduce-check: %s needs a value\n", a);
            return 2;
        }
        char *end = NULL;
        if (!strcmp(a, "--world")) spec.world = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--rank")) spec.rank = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--port")) spec.port = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--bytes")) spec.bytes = strtol(v, &end, 10);
        else if (!strcmp(a, "--iterations")) spec.iterations = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--timeout")) spec.timeout_s = strtod(v, &end);
        else if (!strcmp(a, "--coordinator")) snprintf(spec.coordinator, sizeof spec.coordinator, "%s", v);
        else if (!strcmp(a, "--output")) output = v;
        else if (!strcmp(a, "--port-file")) snprintf(spec.port_file, sizeof spec.port_file, "%s", v);
        else {
            fprintf(stderr, "stratum-trainer allreduce-check: unknown option %s (see --help)\n", a);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "stratum-trainer allreduce-check: %s takes a number, not '%s'\n", a, v);
            return 2;
        }
        i++;
    }
    if (!(spec.timeout_s > 0 && spec.timeout_s <= 86400)) {
        fprintf(stderr, "stratum-trainer allreduce-check: --timeout must be more than 0 and at most 86400 seconds\n");
        return 2;
    }
    if (spec.world < 2 || spec.rank < 0 || spec.rank >= spec.world || (spec.rank > 0 && !spec.coordinator[0]) || spec.port <= 0 || spec.port > 65535) {
        fprintf(stderr, "stratum-trainer allreduce-check: needs --world of at least 2, a --rank below it, a --port, and --coordinator for ranks above 0\n");
        return 2;
    }
    char err[TC_ERR_MAX];
    tc_allreduce_result result;
    int rc = tc_allreduce_check(&spec, &result, err, sizeof err);
    if (rc == 0)
        printf("allreduce: rank %d of %d: bus bandwidth %.3f GB/s (%ld bytes, %.3f ms per all-reduce)\n", spec.rank, spec.world, result.busbw / 1e9,
               result.bytes, result.seconds * 1e3);
    else
        fprintf(stderr, "stratum-trainer: rank %d of %d: %s\n", spec.rank, spec.world, err);
    char werr[TC_ERR_MAX];
    if (output && tc_allreduce_write_metrics(output, &spec, &result, werr, sizeof werr) != 0) {
        fprintf(stderr, "stratum-trainer: %s\n", werr);
        return 1;
    }
    return rc == 0 ? 0 : 1;
}

static int run_plain(const tc_config *cfg, int resume, int quiet, long until) {
    char err[TC_ERR_MAX];
    tc_trainer *t = tc_trainer_create(cfg, err, sizeof err);
    if (!t) {
        fprintf(stderr, "stratum-trainer: %s\n", err);
        return 1;
    }
    if (resume) {
        int r = tc_trainer_resume(t, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "stratum-trainer: %s\n", err);
            tc_trainer_free(t);
            return 1;
        }
        if (r == 1 && !quiet) printf("resumed from checkpoint at step %ld\n", tc_trainer_step_count(t));
    }
    tc_metrics *metrics = NULL;
    if (start_metrics(cfg, &metrics) != 0) {
        tc_trainer_free(t);
        return 1;
    }
    // Data parallel: the ring to the other ranks, connected before the first step.
    tc_dp *dp = NULL;
    if (cfg->dp_workers > 0 && !(dp = tc_dp_open(cfg, tc_trainer_step_count(t), err, sizeof err))) {
        fprintf(stderr, "stratum-trainer: %s\n", err);
        tc_metrics_stop(metrics);
        tc_trainer_free(t);
        return 1;
    }
    double floor = tc_data_entropy_floor(tc_trainer_data(t));
    if (!quiet) {
        printf("model: %d layers, width %d, %d heads, context %d, %zu parameters; batch %d x %d; %d threads\n",
               cfg->n_layer, cfg->n_embd, cfg->n_head, cfg->context, tc_model_num_params(tc_trainer_model(t)),
               cfg->batch_size, cfg->seq_len, cfg->threads);
        if (cfg->backend) printf("device: %s\n", tc_model_device(tc_trainer_model(t)));
        if (floor > 0) printf("data: synthetic Markov source, entropy floor %.4f nats/byte\n", floor);
        if (dp) printf("data parallel: rank %d of %d, gradients ring all-reduced over TCP every step\n", cfg->dp_rank, cfg->dp_workers);
        fflush(stdout);
    }
    int rc = 0;
    double window_loss = 0.0, window_start = now_s();
    long window_steps = 0;
    float loss = 0.0f;
    double tps = 0.0;
    long tokens_per_step = (long)cfg->batch_size * cfg->seq_len;
    long last = until > 0 && until < cfg->steps ? until : cfg->steps, start_step = tc_trainer_step_count(t);
    while (tc_trainer_step_count(t) < last && !stop_requested) {
        if ((dp ? tc_dp_step(dp, t, &loss, err, sizeof err) : tc_trainer_step(t, &loss, err, sizeof err)) != 0) {
            fprintf(stderr, "stratum-trainer: %s\n", err);
            rc = 1;
            break;
        }
        long step = tc_trainer_step_count(t);
        window_loss += loss;
        window_steps++;
        double elapsed = now_s() - window_start;
        tps = elapsed > 0 ? (double)(window_steps * tokens_per_step) / elapsed : 0.0;
        int log_now = cfg->log_every > 0 && (step % cfg->log_every == 0 || step == cfg->steps);
        if (log_now) {
            if (!quiet) {
                char p2p[96] = "";
                if (dp)
                    snprintf(p2p, sizeof p2p, " p2p sent %llu received %llu", (unsigned long long)tc_dp_bytes_sent(dp),
                             (unsigned long long)tc_dp_bytes_received(dp));
                printf("step %ld/%ld loss %.4f lr %.3e tok/s %.0f%s\n", step, cfg->steps, window_loss / (double)window_steps,
                       (double)tc_trainer_lr(cfg, step - 1), tps, p2p);
                fflush(stdout);
            }
            window_loss = 0.0;
            window_steps = 0;
            window_start = now_s();
        }
        if (cfg->checkpoint_dir[0] && cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) {
            if (tc_trainer_save_checkpoint(t, err, sizeof err) != 0) {
                fprintf(stderr, "stratum-trainer: %s\n", err);
                rc = 1;
                break;
            }
        }
        uint64_t sent = dp ? tc_dp_bytes_sent(dp) : 0, received = dp ? tc_dp_bytes_received(dp) : 0;
        tc_metrics_update(metrics, step, loss, tps, tc_trainer_last_checkpoint(t), tc_data_bytes_fetched(tc_trainer_data(t)) + sent + received);
        tc_metrics_update_exchange(metrics, 0, sent, received);
    }
    if (rc == 0 && cfg->checkpoint_dir[0] && tc_trainer_step_count(t) > start_step &&
        (cfg->checkpoint_every == 0 || tc_trainer_step_count(t) % cfg->checkpoint_every != 0)) {
        if (tc_trainer_save_checkpoint(t, err, sizeof err) != 0) {
            fprintf(stderr, "stratum-trainer: %s\n", err);
            rc = 1;
        } else if (!quiet) {
            printf("checkpoint written at step %ld\n", tc_trainer_step_count(t));
        }
    }
    if (rc == 0 && !quiet) {
        printf("%s at step %ld, last loss %.4f\n", stop_requested ? "stopped" : "done", tc_trainer_step_count(t), loss);
        if (!stop_requested && cfg->eval_batches > 0) {
            double ev = tc_trainer_eval(t, cfg->eval_batches, err, sizeof err);
            if (ev < 0) {
                fprintf(stderr, "stratum-trainer: %s\n", err);
                rc = 1;
            } else {
                printf("eval loss %.4f on %d held-out batches\n", ev, cfg->eval_batches);
                if (floor > 0) printf("entropy floor %.4f, gap %.4f\n", floor, ev - floor);
            }
        }
        if (dp) {
            char digest[65];
            tc_trainer_params_digest(t, digest);
            printf("data parallel rank %d: p2p sent %llu received %llu, weights sha256 %s\n", cfg->dp_rank, (unsigned long long)tc_dp_bytes_sent(dp),
                   (unsigned long long)tc_dp_bytes_received(dp), digest);
        }
    }
    tc_dp_close(dp);
    tc_metrics_stop(metrics);
    tc_trainer_free(t);
    return rc;
}

static int run_diloco(const tc_config *cfg, int quiet) {
    char err[TC_ERR_MAX];
    tc_metrics *metrics = NULL;
    if (start_metrics(cfg, &metrics) != 0) return 1;
    tc_diloco_result res;
    int rc = tc_diloco_run(cfg, &res, metrics, quiet, err, sizeof err);
    tc_metrics_stop(metrics);
    if (rc != 0) {
        fprintf(stderr, "stratum-trainer: %s\n", err);
        return 1;
    }
    printf("diloco worker %d done: rounds %d (skipped %d), final loss %.4f, bytes exchanged %llu", cfg->diloco_rank, res.rounds_done,
           res.rounds_skipped, res.final_loss, (unsigned long long)res.bytes_exchanged);
    if (cfg->diloco_p2p)
        printf(", p2p sent %llu received %llu", (unsigned long long)res.p2p_bytes_sent, (unsigned long long)res.p2p_bytes_received);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    tc_config cfg;
    tc_config_defaults(&cfg);
    char err[TC_ERR_MAX];
    const char *config_path = NULL;
    int resume = 1, quiet = 0;
    long until = 0;
    const struct tc_model_backend *backend = TRAINER_BACKEND;
    if (argc > 1 && !strcmp(argv[1], "allreduce-check")) return run_allreduce_check(argc - 1, argv + 1);
    // Config file first, then overrides in order, whatever their position on the line.
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "stratum-trainer: --config needs a file\n");
                return 2;
            }
            config_path = argv[++i];
        }
    }
    if (config_path && tc_config_load_file(&cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "stratum-trainer: %s\n", err);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
        } else if (!strcmp(a, "--no-resume")) {
            resume = 0;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
#ifdef STRATUM_TRAINER_CUDA
        } else if (!strcmp(a, "--matmul")) {
            const char *kind = i + 1 < argc ? argv[++i] : "";
            backend = !strcmp(kind, "tf32")   ? &tc_cuda_backend
                      : !strcmp(kind, "bf16") ? &tc_cuda_bf16_backend
                      : !strcmp(kind, "fp32") ? &tc_cuda_fp32_backend
                                              : NULL;
            if (!backend) {
                fprintf(stderr, "stratum-trainer: --matmul must be tf32, bf16 or fp32, got '%s'\n", kind);
                return 2;
            }
#endif
        } else if (!strcmp(a, "--until-step")) {
            char *end = NULL;
            until = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || !end || *end || until < 1) {
                fprintf(stderr, "stratum-trainer: --until-step needs a positive step number\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--steps")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "stratum-trainer: %s needs a value\n", a);
                return 2;
            }
            char kv[TC_PATH_MAX + 64];
            if (!strcmp(a, "--steps"))
                snprintf(kv, sizeof kv, "train.steps=%s", argv[++i]);
            else
                snprintf(kv, sizeof kv, "%s", argv[++i]);
            char *eq = strchr(kv, '=');
            if (!eq) {
                fprintf(stderr, "stratum-trainer: --set expects KEY=VALUE, got '%s'\n", kv);
                return 2;
            }
            *eq = 0;
            if (tc_config_set(&cfg, kv, eq + 1, err, sizeof err) != 0) {
                fprintf(stderr, "stratum-trainer: %s\n", err);
                return 2;
            }
        } else {
            fprintf(stderr, "stratum-trainer: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!config_path) {
        usage(stderr);
        return 2;
    }
    cfg.backend = backend;
    if (tc_config_validate(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "stratum-trainer: %s\n", err);
        return 2;
    }
    // A parent may spawn us with these blocked (threads of many runtimes block signals);
    // preemption notices must still arrive.
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGTERM);
    sigaddset(&unblock, SIGINT);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    if (cfg.diloco_workers > 0) {
        // A DiLoCo worker checkpoints after every round; on SIGTERM it simply ends and a
        // restart replays from that checkpoint, so the default action is what we want.
        return run_diloco(&cfg, quiet);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    return run_plain(&cfg, resume, quiet, until);
}
