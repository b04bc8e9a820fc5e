/* mma.h — warp-level bf16 tensor-core products on shared-memory tiles.
 *
 * A Tile is a bf16 matrix in shared memory, described from the point of view
 * of one product C[m][n] += A[m][k] · B[k][n]:
 *   - an A tile is stored [m][k] (k contiguous, trans = false) or [k][m]
 *     (m contiguous, trans = true);
 *   - a B tile is stored [n][k] (k contiguous, trans = false; a PyTorch
 *     linear weight, or "Bᵀ") or [k][n] (n contiguous, trans = true).
 * Fragments are loaded with ldmatrix (.trans where the layout needs it) and
 * multiplied with mma.sync.m16n8k16 (fp32 accumulate). Accumulator element
 * acc[i][j][e] of a warp tile at (m0, n0) is C[m0 + 16i + lane/4 + 8(e/2)]
 * [n0 + 8j + 2(lane%4) + e%2]. Rows of tiles should be padded by 16 bytes
 * so that the eight rows one ldmatrix reads fall in different banks. */
#pragma once
#include "kb.h"

typedef struct Tile {
    V base;     /* i32 byte offset of element (0, 0) in dynamic shared memory */
    int ld;     /* bytes between consecutive stored rows */
    bool trans; /* see above */
} Tile;

enum { MMA_MAX_MI = 4, MMA_MAX_NI = 8 };

/* acc[mi][ni][4] += A[m0 .. m0+16·mi, k0 .. k0+klen] · B[k0 .. k0+klen, n0 .. n0+8·ni];
 * klen a multiple of 16, ni even. m0, n0, k0 are i32 values. */
void mma_warp_tile(KB *kb, Tile a, Tile b, V m0, V n0, V k0, int mi, int ni, int klen,
                   KVar acc[MMA_MAX_MI][MMA_MAX_NI][4]);
/* The A fragment (16 rows × 16 k, bf16x2 in four i32) of tile a at (m0, k0),
 * for mma_warp_tile_ra; the layout an accumulator row pair packs into
 * (a[0] = rows lane/4, cols 2(lane%4)+{0,1}; a[1] rows +8; a[2], a[3] cols +8). */
void mma_load_a(KB *kb, Tile a, V m0, V k0, V out[4]);
/* acc[0][j][4] += A · B[k0 .. k0+16·ksteps, n0 .. n0+8·ni] with A (16 rows)
 * held in registers as ksteps fragments: loaded once with mma_load_a (a
 * reused operand), or packed from a previous product's accumulators (the
 * flash-attention P). ni even, at most MMA_MAX_NI. */
void mma_warp_tile_ra(KB *kb, V a[][4], int ksteps, Tile b, V n0, V k0, int ni, KVar acc[MMA_MAX_MI][MMA_MAX_NI][4]);
/* Row and column (within the warp tile) of accumulator element e of fragment (i, j). */
V mma_acc_row(KB *kb, int i, int e);
V mma_acc_col(KB *kb, int j, int e);
/* Max / sum of f32 x over the quad (the 4 lanes that hold one accumulator row), in every lane of it. */
V mma_quad_max(KB *kb, V x);
V mma_quad_sum(KB *kb, V x);
