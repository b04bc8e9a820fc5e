/* schedule.c — schedule overrides (see schedule.h). */
#include "schedule.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

bool schedule_parse(ScheduleSet *s, const char *spec, Diag *d)
{
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof s->o[0].kernel)
        return diag_fail(d, "schedule '%s': expected KERNEL:key=value[,key=value...]", spec);
    char kernel[32];
    snprintf(kernel, sizeof kernel, "%.*s", (int)(colon - spec), spec);
    const char *p = colon + 1;
    while (*p) {
        const char *eq = strchr(p, '=');
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof s->o[0].key)
            return diag_fail(d, "schedule '%s': expected key=value after '%s:'", spec, kernel);
        if (s->n == SCHED_MAX)
            return diag_fail(d, "schedule: more than %d overrides", SCHED_MAX);
        char *end;
        errno = 0;
        long long v = strtoll(eq + 1, &end, 10);
        if (end == eq + 1 || errno || (*end && *end != ','))
            return diag_fail(d, "schedule '%s': value of '%.*s' must be an integer", spec, (int)(eq - p), p);
        snprintf(s->o[s->n].kernel, sizeof s->o[s->n].kernel, "%s", kernel);
        snprintf(s->o[s->n].key, sizeof s->o[s->n].key, "%.*s", (int)(eq - p), p);
        s->o[s->n].value = v;
        s->n++;
        p = *end ? end + 1 : end;
    }
    return true;
}

void schedule_apply(const ScheduleSet *s, Graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        const char *k = node_str(n, "kernel", NULL);
        if (!k)
            continue;
        for (int j = 0; j < s->n; j++)
            if (!strcmp(s->o[j].kernel, k) || (!strcmp(s->o[j].kernel, "*") && node_attr(n, s->o[j].key)))
                node_set_int(g, n, s->o[j].key, s->o[j].value);
    }
}
