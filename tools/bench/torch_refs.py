"""torch_refs.py — PyTorch peers for tools/bench/peers.py, written here from
the published algorithms (nothing copied from the mamba repository):

* ssd_gated: the Mamba2 scan as `mamba_chunk_scan_combined(x, dt, A, B, C,
  chunk, D=D, z=z, dt_bias=dt_bias, dt_softplus=True)` computes it:
  dt = softplus(dt + dt_bias), the chunked SSD of mamba2-minimal (segment sums
  and four contractions: intra-chunk outputs, chunk states, the inter-chunk
  recurrence, state-to-output), + D·x, · silu(z).
* state_update: one decode step of the same layer on an fp32 state:
  state = state·exp(dt·A) + dt·x⊗B (in place), y = state·C + D·x, · silu(z).

Decays (cumulative sums, exp) and the inter-chunk recurrence are fp32; the
large contractions take bf16 operands (cuBLAS accumulates in fp32), like the
peer kernels, which read bf16 activations. Shapes: b batch, l sequence,
h heads, p headdim, g groups, n d_state; x, z (b, l, h, p), dt (b, l, h),
B, C (b, l, g, n), A, D, dt_bias (h,) fp32.
"""
import torch
import torch.nn.functional as F


def segsum(a, cumsum=torch.cumsum):
    """(..., T) -> (..., T, T): out[..., i, j] = sum(a[..., j+1 .. i]) for j <= i, -inf above the diagonal."""
    T = a.size(-1)
    a = a[..., None].expand(*a.shape, T)  # a[..., i, j] = a_i
    below = torch.tril(torch.ones(T, T, device=a.device, dtype=torch.bool), diagonal=-1)
    cs = cumsum(a.masked_fill(~below, 0), dim=-2)
    keep = torch.tril(torch.ones(T, T, device=a.device, dtype=torch.bool), diagonal=0)
    return cs.masked_fill(~keep, float("-inf"))


def ssd_gated(x, dt, A, B, C, D, z, dt_bias, chunk, cumsum=torch.cumsum):
    """Returns y (b, l, h, p) in x's dtype. l must be a multiple of chunk.
    `cumsum` is torch.cumsum, or a wrapper of it that torch.compile leaves to
    ATen (a graph break) where Inductor's scan code generation fails."""
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    k = h // g  # heads per group
    c = l // chunk
    ct = x.dtype  # operand dtype of the large contractions
    dt = F.softplus(dt.float() + dt_bias)  # (b, l, h) fp32
    a = (dt * A).view(b, c, chunk, g, k).permute(0, 3, 4, 1, 2)  # (b, g, k, c, L): dt·A per step
    a_cum = cumsum(a, dim=-1)
    xdt = (x.float() * dt[..., None]).to(ct).view(b, c, chunk, g, k, p)  # dt·x
    Bc = B.view(b, c, chunk, g, n)
    Cc = C.view(b, c, chunk, g, n)
    # 1. intra-chunk (diagonal blocks): y_l += sum_s (C_l·B_s) exp(cum_l - cum_s) dt_s x_s
    decay_in = torch.exp(segsum(a, cumsum)).to(ct)  # (b, g, k, c, L, S)
    cb = torch.einsum("bclgn,bcsgn->bcgls", Cc, Bc)
    y_diag = torch.einsum("bcgls,bgkcls,bcsgkp->bclgkp", cb, decay_in, xdt)
    # 2. the state each chunk contributes at its end
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum).to(ct)  # (b, g, k, c, L)
    states = torch.einsum("bclgn,bgkcl,bclgkp->bcgkpn", Bc, decay_to_end, xdt).float()
    # 3. inter-chunk recurrence (fp32): the state entering each chunk
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)  # (b, c+1, g, k, p, n)
    decay_chunk = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0)), cumsum))  # (b, g, k, c+1, c+1)
    states = torch.einsum("bgkzc,bcgkpn->bzgkpn", decay_chunk, states)[:, :-1]
    # 4. state -> output: y_l += exp(cum_l) C_l · S_in
    decay_out = torch.exp(a_cum).to(ct)  # (b, g, k, c, L)
    y_off = torch.einsum("bclgn,bcgkpn,bgkcl->bclgkp", Cc, states.to(ct), decay_out)
    y = (y_diag.float() + y_off.float()).reshape(b, l, h, p)
    y = y + x.float() * D[:, None]
    y = y * F.silu(z.float())
    return y.to(x.dtype)


def state_update(state, x, dt, A, B, C, D, z, dt_bias):
    """One decode step. state (b, h, p, n) fp32 is updated in place; x, z
    (b, h, p), dt (b, h), B, C (b, g, n). Returns y (b, h, p) in x's dtype."""
    h = x.shape[1]
    k = h // B.shape[1]
    dt = F.softplus(dt.float() + dt_bias)  # (b, h)
    dA = torch.exp(dt * A)  # (b, h)
    Bh = B.float().repeat_interleave(k, dim=1)  # (b, h, n)
    Ch = C.float().repeat_interleave(k, dim=1)
    xf = x.float()
    state.copy_(state * dA[..., None, None] + (dt[..., None] * xf)[..., None] * Bh[:, :, None, :])
    y = torch.einsum("bhpn,bhn->bhp", state, Ch) + D[:, None] * xf
    y = y * F.silu(z.float())
    return y.to(x.dtype)
