/* A plain C99 program: a 12-group model streamed under a budget of a third of its size,
   on the backend FERRY_BACKEND names (unset: sim; cuda; auto), every byte checked.

   Verify mode checks every frozen byte on the device at each release (a checksum on the
   caller's stream, compared with the host image's), which is how a C program sees device
   bytes on any backend. On sim, where device memory is host memory and NULL is the
   calling thread, the bytes are also read through the device pointers themselves.

   Prints "ferry-tests: ferry-c-stream ran on <backend>; 0 sim-only test cases not run"
   first; exits 77 (a skip, for meson) when cuda is asked for and cannot run here. */
#include <ferry/ferry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUPS 12
#define TENSORS 3
#define TENSOR_BYTES 10000

#define CHECK(call)                                                                     \
    do {                                                                                \
        ferry_status status_ = (call);                                                  \
        if (status_ != FERRY_OK) {                                                      \
            fprintf(stderr, "%s failed: %s: %s\n", #call, ferry_status_string(status_), \
                    ferry_last_error());                                                \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

static unsigned char expected(int g, int t, int i) { return (unsigned char)(g * 31 + t * 7 + i); }

/* FERRY_BACKEND as a backend; returns 0 when it names none. */
static int backend_from_env(ferry_backend *out) {
    const char *value = getenv("FERRY_BACKEND");
    if (value == NULL || *value == '\0' || strcmp(value, "sim") == 0) {
        *out = FERRY_BACKEND_SIM;
    } else if (strcmp(value, "cuda") == 0) {
        *out = FERRY_BACKEND_CUDA;
    } else if (strcmp(value, "auto") == 0) {
        *out = FERRY_BACKEND_AUTO;
    } else {
        return 0;
    }
    return 1;
}

int main(void) {
    ferry_config config;
    ferry_runtime *rt = NULL;
    ferry_group groups[GROUPS];
    ferry_tensor tensors[GROUPS][TENSORS];
    ferry_stats stats;
    ferry_status created;
    int g, t, i, pass, on_sim;
    char name[32];

    ferry_config_init(&config);
    if (!backend_from_env(&config.backend)) {
        printf("ferry-tests: ferry-c-stream did not run: FERRY_BACKEND='%s' is not sim, cuda "
               "or auto (unset means sim)\n", getenv("FERRY_BACKEND"));
        return 1;
    }
    config.vram_budget = (uint64_t)GROUPS * TENSORS * TENSOR_BYTES / 3;
    config.name = "c-stream";
    config.verify = 1;
    created = ferry_create(&config, &rt);
    if (created == FERRY_ERROR_BACKEND_UNAVAILABLE && config.backend == FERRY_BACKEND_CUDA) {
        printf("ferry-tests: ferry-c-stream did not run: FERRY_BACKEND=cuda, but a cuda runtime "
               "cannot be created here: %s: %s\n", ferry_status_string(created),
               ferry_last_error());
        return 77;
    }
    CHECK(created);
    stats.struct_size = sizeof stats;
    CHECK(ferry_stats_get(rt, &stats));
    on_sim = stats.backend == FERRY_BACKEND_SIM;
    printf("ferry-tests: ferry-c-stream ran on %s; 0 sim-only test cases not run\n",
           on_sim ? "sim" : "cuda");
    fflush(stdout);
    for (g = 0; g < GROUPS; ++g) {
        sprintf(name, "block.%d", g);
        CHECK(ferry_group_define(rt, name, &groups[g]));
        for (t = 0; t < TENSORS; ++t) {
            int64_t shape[1];
            shape[0] = TENSOR_BYTES;
            sprintf(name, "w%d", t);
            CHECK(ferry_tensor_define(rt, groups[g], name, TENSOR_BYTES, FERRY_DTYPE_U8, 1, shape,
                                      0, &tensors[g][t]));
        }
    }
    CHECK(ferry_plan(rt));
    for (g = 0; g < GROUPS; ++g) {
        for (t = 0; t < TENSORS; ++t) {
            unsigned char *host = NULL;
            CHECK(ferry_tensor_host_ptr(rt, tensors[g][t], (void **)&host));
            for (i = 0; i < TENSOR_BYTES; ++i) host[i] = expected(g, t, i);
        }
    }
    CHECK(ferry_seal(rt));
    for (pass = 0; pass < 5; ++pass) {
        for (g = 0; g < GROUPS; ++g) {
            CHECK(ferry_acquire(rt, groups[g], NULL));
            for (t = 0; t < TENSORS; ++t) {
                unsigned char *device = NULL;
                CHECK(ferry_tensor_device_ptr(rt, tensors[g][t], (void **)&device));
                if (!on_sim) continue; /* device memory: verify mode checks it at release */
                for (i = 0; i < TENSOR_BYTES; ++i) {
                    if (device[i] != expected(g, t, i)) {
                        fprintf(stderr, "pass %d group %d tensor %d byte %d wrong\n", pass, g, t, i);
                        return 1;
                    }
                }
            }
            CHECK(ferry_release(rt, groups[g], NULL));
        }
    }
    /* Waits for every pending verify check; a mismatch fails it, naming group and tensor. */
    CHECK(ferry_synchronize(rt));
    CHECK(ferry_stats_get(rt, &stats));
    printf("c-stream: %llu passes, %llu acquires (%llu resident, %llu hits, %llu misses), "
           "%llu bytes H2D, %llu bytes D2H, %llu releases verified on the device\n",
           (unsigned long long)stats.passes, (unsigned long long)stats.acquires,
           (unsigned long long)stats.resident_hits, (unsigned long long)stats.hits,
           (unsigned long long)stats.misses, (unsigned long long)stats.bytes_h2d,
           (unsigned long long)stats.bytes_d2h, (unsigned long long)stats.verify_checks);
    if (stats.passes != 5 || stats.bytes_d2h != 0 ||
        stats.acquires != stats.resident_hits + stats.hits + stats.misses ||
        stats.verify_checks != stats.releases || stats.verify_failures != 0) {
        fprintf(stderr, "unexpected stats\n");
        return 1;
    }
    CHECK(ferry_destroy(rt));
    return 0;
}
