/* schedule.h — schedule overrides: "gemm:bk=64,stages=4" sets those
 * attributes on every node lowered to kernel template `gemm` (after the
 * lowering pass picked its defaults). Used by `msac compile/bench
 * --schedule` for manual tuning, and by the tuner. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"

enum { SCHED_MAX = 32 };

typedef struct ScheduleSet {
    int n;                  /* overrides */
    struct {
        char kernel[32];    /* kernel template, or "*" for every node with the key */
        char key[32];       /* schedule attribute */
        int64_t value;      /* its value */
    } o[SCHED_MAX];
} ScheduleSet;

/* Adds the overrides of one spec "KERNEL:key=value[,key=value...]". */
bool schedule_parse(ScheduleSet *s, const char *spec, Diag *d);

typedef struct Graph Graph;
/* Applies s to the lowered graph g (a pipeline tweak hook). */
void schedule_apply(const ScheduleSet *s, Graph *g);
