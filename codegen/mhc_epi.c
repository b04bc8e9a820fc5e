/* mhc_epi.c — the mHC stream update of one element, shared by the kernels
 * that end a block (k_gemv.c, k_moe.c's moe_combine, k_hybrid.c); see
 * mhc_epi.h. k_gemm.c loads the coefficients with mhc_epi_coef and updates
 * its column pairs itself (8-byte accesses on the mma fragments). */
#include "mhc_epi.h"

#include <stdio.h>

int mhc_epi_streams(const Node *n) { return node_mhc_epilogue(n) ? (int)node_int(n, "streams", 1) : 0; }

void mhc_epi_coef(KB *kb, int ns, V coef, V row, V hc[MHC_EPI_MAX_COEF])
{
    V crow = kb_gep(kb, kb->f32, coef, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, ns + ns * ns)));
    for (int k = 0; k < ns + ns * ns; k++) /* H_post [n], then H_res [n, n] */
        hc[k] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, crow, kb_i32(kb, k)));
}

void mhc_epi_update(KB *kb, int ns, int64_t N, const V hc[MHC_EPI_MAX_COEF], V v, V xs, V out, V sbase)
{
    V xv[MHC_EPI_MAX_STREAMS];
    for (int j = 0; j < ns; j++) /* every stream j at this column */
        xv[j] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, xs, kb_add(kb, sbase, kb_i64(kb, j * N))));
    for (int i = 0; i < ns; i++) { /* stream i of the result: H_post[i]·o, then H_res[i, j]·x_j in j order */
        V u = kb_mul(kb, hc[i], v);
        for (int j = 0; j < ns; j++)
            u = kb_fma(kb, hc[ns + i * ns + j], xv[j], u);
        kb_store(kb, u, kb_gep(kb, kb->f32, out, kb_add(kb, sbase, kb_i64(kb, i * N))));
    }
}

int64_t mhc_epi_bytes(int ns, int64_t N) { return 2 * (int64_t)ns * N * 4 + (int64_t)(ns + ns * ns) * 4; }

int64_t mhc_epi_flops(int ns, int64_t N) { return 2 * N * ns * (ns + 1); }

const char *mhc_epi_tag(int ns, char buf[MHC_EPI_TAG])
{
    buf[0] = 0;
    if (ns)
        snprintf(buf, MHC_EPI_TAG, "_mhc%d", ns);
    return buf;
}
