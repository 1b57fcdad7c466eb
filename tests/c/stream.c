/* A plain C99 program: a 12-group model streamed on sim under a budget of a third of its
   size, every byte checked through the device pointers. */
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

int main(void) {
    ferry_config config;
    ferry_runtime *rt = NULL;
    ferry_group groups[GROUPS];
    ferry_tensor tensors[GROUPS][TENSORS];
    ferry_stats stats;
    int g, t, i, pass;
    char name[32];

    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.vram_budget = (uint64_t)GROUPS * TENSORS * TENSOR_BYTES / 3;
    config.name = "c-stream";
    CHECK(ferry_create(&config, &rt));
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
    stats.struct_size = sizeof stats;
    CHECK(ferry_stats_get(rt, &stats));
    printf("c-stream: %llu passes, %llu acquires (%llu resident, %llu hits, %llu misses), "
           "%llu bytes H2D, %llu bytes D2H\n",
           (unsigned long long)stats.passes, (unsigned long long)stats.acquires,
           (unsigned long long)stats.resident_hits, (unsigned long long)stats.hits,
           (unsigned long long)stats.misses, (unsigned long long)stats.bytes_h2d,
           (unsigned long long)stats.bytes_d2h);
    if (stats.passes != 5 || stats.bytes_d2h != 0 ||
        stats.acquires != stats.resident_hits + stats.hits + stats.misses) {
        fprintf(stderr, "unexpected stats\n");
        return 1;
    }
    CHECK(ferry_destroy(rt));
    return 0;
}
