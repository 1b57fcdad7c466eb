/* Compiled with -std=c99 -pedantic -Werror: the public header is plain C99, and its
   version macros agree with the library. */
#include <ferry/ferry.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    char expected[32];
    ferry_config config;
    ferry_stats stats;
    ferry_group group = {0};
    ferry_tensor tensor = {0};
    ferry_load_options options;
    ferry_load_report report;
    ferry_weights_tensor file_tensor;
    sprintf(expected, "%d.%d.%d", FERRY_VERSION_MAJOR, FERRY_VERSION_MINOR, FERRY_VERSION_PATCH);
    if (strcmp(expected, ferry_version()) != 0 || ferry_version_number() != FERRY_VERSION_NUMBER) {
        fprintf(stderr, "header says %s, library says %s\n", expected, ferry_version());
        return 1;
    }
    ferry_config_init(&config);
    if (config.struct_size != sizeof config || config.slots_per_class != 2) return 1;
    stats.struct_size = sizeof stats;
    ferry_load_options_init(&options);
    if (options.struct_size != sizeof options || options.convert_dtype != 1 ||
        options.disk_tier != 1 || options.direct != 0 || options.tensors != NULL) {
        return 1;
    }
    report.struct_size = sizeof report;
    file_tensor.ndim = 0;
    (void)file_tensor;
    if (ferry_weights_close(NULL) != FERRY_OK) return 1;
    if (strcmp(ferry_status_string(FERRY_ERROR_NOT_IN_MEMORY), "unknown status") == 0) return 1;
    (void)group;
    (void)tensor;
    printf("ferry %s: C99 header ok\n", ferry_version());
    return 0;
}
