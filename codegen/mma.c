/* mma.c — warp-level tensor-core products (see mma.h). */
#include "mma.h"

#include "nvvm.h"

/* ldmatrix address of lane `lane` for the A fragment (16 rows × 16 k) at (r0, k0). */
static V a_addr(KB *kb, Tile a, V lane, V r0, V k0)
{
    V row, col;
    if (!a.trans) { /* stored [m][k]: lanes 0-15 rows m, lanes 16-31 the k+8 half */
        row = kb_add(kb, r0, kb_rem(kb, lane, kb_i32(kb, 16)));
        col = kb_add(kb, k0, kb_mul(kb, kb_div(kb, lane, kb_i32(kb, 16)), kb_i32(kb, 8)));
    } else { /* stored [k][m]: matrix i = lane/8 covers m-half i%2, k-half i/2 */
        V i = kb_div(kb, lane, kb_i32(kb, 8));
        row = kb_add(kb, k0, kb_add(kb, kb_rem(kb, lane, kb_i32(kb, 8)), kb_mul(kb, kb_div(kb, i, kb_i32(kb, 2)), kb_i32(kb, 8))));
        col = kb_add(kb, r0, kb_mul(kb, kb_rem(kb, i, kb_i32(kb, 2)), kb_i32(kb, 8)));
    }
    return kb_add(kb, a.base, kb_add(kb, kb_mul(kb, row, kb_i32(kb, a.ld)), kb_mul(kb, col, kb_i32(kb, 2))));
}

/* ldmatrix address for two B fragments (k16 × n8 each) at (k0, n0) and (k0, n0+8). */
static V b_addr(KB *kb, Tile b, V lane, V n0, V k0)
{
    V row, col;
    V i = kb_div(kb, lane, kb_i32(kb, 8));
    if (!b.trans) { /* stored [n][k]: matrices (n0-7,k0-7) (n0-7,k8-15) (n8-15,k0-7) (n8-15,k8-15) */
        row = kb_add(kb, n0, kb_add(kb, kb_rem(kb, lane, kb_i32(kb, 8)), kb_mul(kb, kb_div(kb, i, kb_i32(kb, 2)), kb_i32(kb, 8))));
        col = kb_add(kb, k0, kb_mul(kb, kb_rem(kb, i, kb_i32(kb, 2)), kb_i32(kb, 8)));
    } else { /* stored [k][n]: same four matrices, read transposed */
        row = kb_add(kb, k0, kb_add(kb, kb_rem(kb, lane, kb_i32(kb, 8)), kb_mul(kb, kb_rem(kb, i, kb_i32(kb, 2)), kb_i32(kb, 8))));
        col = kb_add(kb, n0, kb_mul(kb, kb_div(kb, i, kb_i32(kb, 2)), kb_i32(kb, 8)));
    }
    return kb_add(kb, b.base, kb_add(kb, kb_mul(kb, row, kb_i32(kb, b.ld)), kb_mul(kb, col, kb_i32(kb, 2))));
}

void mma_warp_tile(KB *kb, Tile a, Tile b, V m0, V n0, V k0, int mi, int ni, int klen,
                   KVar acc[MMA_MAX_MI][MMA_MAX_NI][4])
{
    V lane = nvvm_lane(kb);
    for (int kk = 0; kk < klen; kk += 16) {
        V k = kb_add(kb, k0, kb_i32(kb, kk));
        V af[MMA_MAX_MI][4], bf[MMA_MAX_NI][2];
        for (int i = 0; i < mi; i++)
            nvvm_ldmatrix_x4(kb, kb_smem(kb, a_addr(kb, a, lane, kb_add(kb, m0, kb_i32(kb, 16 * i)), k)), a.trans, af[i]);
        for (int j = 0; j < ni; j += 2) {
            V r[4];
            nvvm_ldmatrix_x4(kb, kb_smem(kb, b_addr(kb, b, lane, kb_add(kb, n0, kb_i32(kb, 8 * j)), k)), b.trans, r);
            bf[j][0] = r[0], bf[j][1] = r[1], bf[j + 1][0] = r[2], bf[j + 1][1] = r[3];
        }
        for (int i = 0; i < mi; i++)
            for (int j = 0; j < ni; j++) {
                V c[4], d[4];
                for (int e = 0; e < 4; e++)
                    c[e] = kb_get(kb, acc[i][j][e]);
                nvvm_mma_bf16(kb, af[i], bf[j], c, d);
                for (int e = 0; e < 4; e++)
                    kb_set(kb, acc[i][j][e], d[e]);
            }
    }
}

void mma_load_a(KB *kb, Tile a, V m0, V k0, V out[4])
{
    nvvm_ldmatrix_x4(kb, kb_smem(kb, a_addr(kb, a, nvvm_lane(kb), m0, k0)), a.trans, out);
}

void mma_warp_tile_ra(KB *kb, V a[][4], int ksteps, Tile b, V n0, V k0, int ni, KVar acc[MMA_MAX_MI][MMA_MAX_NI][4])
{
    V lane = nvvm_lane(kb);
    for (int ks = 0; ks < ksteps; ks++) {
        V k = kb_add(kb, k0, kb_i32(kb, 16 * ks));
        for (int j = 0; j < ni; j += 2) {
            V r[4];
            nvvm_ldmatrix_x4(kb, kb_smem(kb, b_addr(kb, b, lane, kb_add(kb, n0, kb_i32(kb, 8 * j)), k)), b.trans, r);
            for (int h = 0; h < 2; h++) {
                V bf[2] = {r[2 * h], r[2 * h + 1]}, c[4], d[4];
                for (int e = 0; e < 4; e++)
                    c[e] = kb_get(kb, acc[0][j + h][e]);
                nvvm_mma_bf16(kb, a[ks], bf, c, d);
                for (int e = 0; e < 4; e++)
                    kb_set(kb, acc[0][j + h][e], d[e]);
            }
        }
    }
}

V mma_acc_row(KB *kb, int i, int e)
{
    return kb_add(kb, kb_div(kb, nvvm_lane(kb), kb_i32(kb, 4)), kb_i32(kb, 16 * i + 8 * (e / 2)));
}

V mma_acc_col(KB *kb, int j, int e)
{
    return kb_add(kb, kb_mul(kb, kb_rem(kb, nvvm_lane(kb), kb_i32(kb, 4)), kb_i32(kb, 2)), kb_i32(kb, 8 * j + e % 2));
}

V mma_quad_max(KB *kb, V x)
{
    x = kb_max(kb, x, nvvm_shfl_xor(kb, x, 1));
    return kb_max(kb, x, nvvm_shfl_xor(kb, x, 2));
}

V mma_quad_sum(KB *kb, V x)
{
    x = kb_add(kb, x, nvvm_shfl_xor(kb, x, 1));
    return kb_add(kb, x, nvvm_shfl_xor(kb, x, 2));
}
