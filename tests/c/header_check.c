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
    sprintf(expected, "%d.%d.%d", FERRY_VERSION_MAJOR, FERRY_VERSION_MINOR, FERRY_VERSION_PATCH);
    if (strcmp(expected, ferry_version()) != 0 || ferry_version_number() != FERRY_VERSION_NUMBER) {
        fprintf(stderr, "header says %s, library says %s\n", expected, ferry_version());
        return 1;
    }
    ferry_config_init(&config);
    if (config.struct_size != sizeof config || config.slots_per_class != 2) return 1;
    stats.struct_size = sizeof stats;
    (void)group;
    (void)tensor;
    printf("ferry %s: C99 header ok\n", ferry_version());
    return 0;
}
