/* cli_info.c — `msac info PLAN`: what a plan holds. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "msac/runtime.h"

int cli_info(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: msac info PLAN\n");
        return argc == 2 ? 0 : 2;
    }
    msac_plan *p;
    msac_status st = msac_plan_load(argv[1], &p);
    if (st) {
        fprintf(stderr, "msac: %s\n", msac_status_message(st));
        msac_status_free(st);
        return 1;
    }
    msac_plan_info pi;
    msac_plan_get_info(p, &pi);
    printf("plan %s\n  model %s, vocab %lld, target %s (PTX ISA %d.%d), written by msac %s, options %016llx\n",
           argv[1], pi.model, (long long)pi.vocab_size, pi.target, pi.ptx_isa / 10, pi.ptx_isa % 10, pi.msac_version,
           (unsigned long long)pi.options_hash);
    printf("\nkernels (%d):\n", pi.num_kernels);
    for (int i = 0; i < pi.num_kernels; i++) {
        msac_kernel_info k;
        msac_plan_kernel_info(p, i, &k);
        printf("  %3d %-52s block %4u  smem %6u B  ptx %6zu B  %s\n", i, k.name, k.block[0], k.smem_bytes,
               k.ptx_bytes, k.params);
    }
    for (int i = 0; i < pi.num_programs; i++) {
        msac_program_info pr;
        msac_plan_program_info(p, i, &pr);
        printf("\nprogram %s (%d launches):\n", pr.name, pr.num_launches);
        for (int j = 0; j < pr.num_launches; j++) {
            int k;
            char grid[256];
            msac_plan_launch_info(p, i, j, &k, grid, sizeof grid);
            msac_kernel_info ki;
            msac_plan_kernel_info(p, k, &ki);
            printf("  %3d kernel %3d %-48s grid %s\n", j, k, ki.name, grid);
        }
    }
    static const char *const kinds[] = {"weight", "state", "input", "output", "workspace"};
    printf("\nbuffers (%d):\n", pi.num_buffers);
    for (int i = 0; i < pi.num_buffers; i++) {
        msac_buffer_info b;
        msac_plan_buffer_info(p, i, &b);
        if (b.kind == MSAC_BUF_WEIGHT)
            continue; /* listed below */
        printf("  %-9s %-5s %-40s bytes %-24s%s%s\n", kinds[b.kind], b.dtype, b.name, b.bytes,
               b.offset[0] ? " offset " : "", b.offset);
    }
    printf("\nweights (%d):\n", pi.num_weights);
    uint64_t total = 0;
    for (int i = 0; i < pi.num_weights; i++) {
        msac_weight_info w;
        msac_plan_weight_info(p, i, &w);
        char shape[96] = "";
        uint64_t n = 1;
        for (int k = 0; k < w.ndim; k++) {
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", k ? "x" : "",
                     (long long)w.dims[k]);
            n *= (uint64_t)w.dims[k];
        }
        total += n;
        printf("  %-52s %-5s %-14s init %s\n", w.name, w.dtype, shape, w.init);
    }
    printf("  total %.2f M parameters\n", (double)total / 1e6);
    uint64_t mem;
    st = msac_plan_memory_required(p, 1, 2048, 4096, &mem);
    if (!st)
        printf("\ndevice memory for batch 1, seq 2048, ctx 4096: %.1f MiB\n", (double)mem / 1048576.0);
    msac_status_free(st);
    msac_plan_free(p);
    return 0;
}
