/* emit_parallel.c — a program's distinct kernels emitted on several
 * threads before emit_plan walks the program (emit_parallel.h).
 *
 * LLVM's O3 pipeline and the NVPTX backend are most of a compile's time
 * (sparse-mamba-lm: 59 distinct kernels). Every kernel is a module of its
 * own, so the distinct kernel keys of a program are independent jobs: each
 * worker thread owns an LLVM context and target machine (codegen_init),
 * takes the next job by an atomic counter and runs the node's template
 * emitter. After the join the launches go into the memo in node order, and
 * emit_plan's sequential walk finds each kernel there: the plan is the same
 * bytes as a one-thread compile's (test_compile_threads checks it). */
#include "emit_parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "tune_space.h"

typedef struct Job {
    const Node *n; /* the first node of the program with this kernel key */
    char *key;     /* kernel_key(n) (malloc'd) */
    KOut *ko;      /* its launches, once emitted (calloc'd) */
    bool ok;       /* the emitter succeeded */
} Job;

typedef struct Jobs {
    const TargetDesc *target; /* what the workers compile for */
    Job *job;                 /* [n] */
    int n;                    /* jobs */
    atomic_int next;          /* the next job to take */
} Jobs;

int emit_thread_count(int threads)
{
    if (threads > 0)
        return threads;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > EMIT_MAX_THREADS ? EMIT_MAX_THREADS : (int)cpus;
}

static void *worker(void *arg)
{
    Jobs *js = arg;
    Codegen cg;
    Diag d = {0};
    if (!codegen_init(&cg, js->target, &d))
        return NULL; /* the jobs it would have taken stay for the others or the walk */
    for (int i; (i = atomic_fetch_add(&js->next, 1)) < js->n;) {
        Job *j = &js->job[i];
        KernelEmitFn fn = kernel_lookup(node_str(j->n, "kernel", NULL));
        Diag jd = {0};
        j->ok = fn && fn(&cg, j->n, j->ko, &jd);
    }
    codegen_free(&cg);
    return NULL;
}

void emit_parallel(const TargetDesc *t, KernelMemo *memo, const Graph *g, int threads)
{
    if (threads < 2)
        return;
    Jobs js = {.target = t};
    js.job = calloc((size_t)g->nnodes + 1, sizeof *js.job);
    if (!js.job)
        abort();
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (!node_str(n, "kernel", NULL))
            continue;
        char *key = kernel_key(n, false);
        bool seen = kernel_memo_has(memo, t->name, key);
        for (int j = 0; !seen && j < js.n; j++)
            seen = !strcmp(js.job[j].key, key);
        if (seen) {
            free(key);
            continue;
        }
        KOut *ko = calloc(1, sizeof *ko);
        if (!ko)
            abort();
        js.job[js.n++] = (Job){.n = n, .key = key, .ko = ko};
    }
    if (js.n >= 2) {
        int nt = threads < js.n ? threads : js.n, started = 0;
        pthread_t *tid = malloc((size_t)nt * sizeof *tid);
        if (!tid)
            abort();
        atomic_init(&js.next, 0);
        for (int i = 0; i < nt; i++)
            started += pthread_create(&tid[started], NULL, worker, &js) == 0;
        for (int i = 0; i < started; i++)
            pthread_join(tid[i], NULL);
        free(tid);
    }
    for (int i = 0; i < js.n; i++) {
        Job *j = &js.job[i];
        if (j->ok)
            kernel_memo_put(memo, t->name, j->key, j->ko);
        for (int k = 0; k < j->ko->n; k++)
            free(j->ko->l[k].ptx);
        free(j->ko);
        free(j->key);
    }
    free(js.job);
}
