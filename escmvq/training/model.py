"""ESC-MVQ network: the VQ-VAE encoder/decoder of [19], V codebooks and their bit-flip
probabilities, and the multi-codebook loss (27)-(29) of Algorithm 1.

Encoder: 4x4/2 conv -> ReLU -> 4x4/2 conv -> residual blocks (ReLU-3x3-ReLU-1x1) -> ReLU
-> 1x1 projection to D channels. A HxW image gives an (H/4)x(W/4)xD latent (32x32 -> 8x8x4,
N = 64). Decoder mirrors it: 3x3 conv D -> hidden, residual blocks, ReLU, 4x4/2 transposed
conv -> ReLU -> 4x4/2 transposed conv to 3 channels. Fully convolutional.

``ESCMVQ.forward(x, stage, tau, generator)`` computes the stage-``stage`` loss (27):
for u = 1..stage, z_q^(u) = nearest codeword (23), the Gumbel-Softmax sample z~^(u) (25)
of the BSC (24) around it, the decoder input z + sg(z~ - z) (14), d0 = MSE(x, x^(u)),
d1 = ||sg(z) - z~||^2 + beta ||z - sg(z~)||^2 (on the *sample*, see NOTES: the
straight-through input gives the codebooks and mu no gradient through d0), and
lambda^(u) R(mu^(u)) (22). The v decoder passes run as one batch.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from escmvq.training import losses as L
from escmvq.training import quantizer as Q
from escmvq.training.presets import Preset

__all__ = ["ESCMVQ", "Encoder", "Decoder"]

@functools.lru_cache(maxsize=None)
def _gray_ratio_table(device: torch.device = torch.device("cpu")):
    """``(log mu grid, r_s)`` on ``device``: the exact BER of Gray 16-QAM's strong (sign) bit
    over the average BER mu, at the symbol SNR where the average is mu (escmvq.core.ber).
    Built once per device (read every training step)."""
    import numpy as np

    from escmvq.core.ber import GrayQamExact

    g = GrayQamExact()
    mu = np.exp(np.linspace(np.log(1e-8), np.log(0.5), 400))
    q = g.power(mu, 4)
    pos = g.ber_positions(q, 4)  # [n, 4]: strong, strong, weak, weak
    r = np.where(mu < 0.5, pos[:, 0] / mu, 1.0)
    return torch.from_numpy(np.log(mu)).to(device), torch.from_numpy(r).to(device)


class ResBlock(nn.Module):
    def __init__(self, ch: int, res_ch: int):
        super().__init__()
        self.conv3 = nn.Conv2d(ch, res_ch, 3, padding=1)
        self.conv1 = nn.Conv2d(res_ch, ch, 1)

    def forward(self, x):
        return x + self.conv1(F.relu(self.conv3(F.relu(x))))


def scalars_to_row(z: torch.Tensor) -> torch.Tensor:
    """SQ layout: ``[b, C, h, w]`` -> ``[b, 1, h, w*C]`` (a position's C scalars side by side,
    so the runtime's raster sub-vectors with ``D = 1`` are the scalars)."""
    b, c, h, w = z.shape
    return z.permute(0, 2, 3, 1).reshape(b, 1, h, w * c)


def row_to_scalars(z: torch.Tensor, c: int) -> torch.Tensor:
    """Inverse of :func:`scalars_to_row`: ``[b, 1, h, w*C]`` -> ``[b, C, h, w]``."""
    b, _, h, wc = z.shape
    return z.reshape(b, h, wc // c, c).permute(0, 3, 1, 2)


class Encoder(nn.Module):
    """``sq_channels``: the scalar-quantizer baselines' encoder (tanh-bounded ``C`` channels
    laid out by :func:`scalars_to_row`); ``None`` for the VQ latent ``[b, D, h, w]``."""

    def __init__(self, hidden: int, res_hidden: int, res_blocks: int, D: int, sq_channels: int | None = None):
        super().__init__()
        self.sq_channels = sq_channels
        self.conv1 = nn.Conv2d(3, hidden // 2 if hidden >= 2 else hidden, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(self.conv1.out_channels, hidden, 4, stride=2, padding=1)
        self.res = nn.Sequential(*[ResBlock(hidden, res_hidden) for _ in range(res_blocks)])
        self.proj = nn.Conv2d(hidden, sq_channels or D, 1)

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x)))
        z = self.proj(F.relu(self.res(h)))
        if self.sq_channels:
            z = scalars_to_row(torch.tanh(z))
        return z


class Decoder(nn.Module):
    """``cond_channels > 0``: the reliability-aware decoder. A second input ``cond [b, C, h, w]``
    (the codebook map, :func:`escmvq.core.pvq.codebook_map`) is added, through a 3x3 conv, to
    the first hidden layer and, through a 1x1 conv, to the input of every residual block;
    followed by ReLUs these additive terms can gate features per position (e.g. turn down
    the features of a sub-vector that came on a noisy codebook or was not sent). All of them
    start at zero, so a fresh conditioned decoder computes the unconditioned one."""

    def __init__(self, hidden: int, res_hidden: int, res_blocks: int, D: int, sq_channels: int | None = None,
                 cond_channels: int = 0):
        super().__init__()
        self.sq_channels = sq_channels
        self.cond_channels = cond_channels
        self.conv_in = nn.Conv2d(sq_channels or D, hidden, 3, padding=1)
        self.res = nn.Sequential(*[ResBlock(hidden, res_hidden) for _ in range(res_blocks)])
        self.up1 = nn.ConvTranspose2d(hidden, hidden // 2 if hidden >= 2 else hidden, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(self.up1.out_channels, 3, 4, stride=2, padding=1)
        if cond_channels:
            self.cond_in = nn.Conv2d(cond_channels, hidden, 3, padding=1)
            self.cond_res = nn.ModuleList([nn.Conv2d(cond_channels, hidden, 1) for _ in range(res_blocks)])
            for m in [self.cond_in, *self.cond_res]:
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, z, cond=None):
        if self.sq_channels:
            z = row_to_scalars(z, self.sq_channels)
        if not self.cond_channels:
            h = F.relu(self.res(self.conv_in(z)))
        else:
            if cond is None:
                raise ValueError("this decoder is reliability-aware: it needs the codebook map (cond)")
            h = self.conv_in(z) + self.cond_in(cond)
            for blk, cr in zip(self.res, self.cond_res):
                h = blk(h + cr(cond))
            h = F.relu(h)
        return self.up2(F.relu(self.up1(h)))


class ESCMVQ(nn.Module):
    """One encoder-decoder pair, ``codebooks [V, K, D]`` and ``mu() -> [V, N, B]``."""

    def __init__(self, preset: Preset):
        super().__init__()
        preset.validate()
        self.preset = preset
        V, K, D, B, N = preset.V, preset.K, preset.D, preset.B, preset.N
        sq = preset.sq_channels if preset.quantizer == "sq" else None
        self.encoder = Encoder(preset.hidden, preset.res_hidden, preset.res_blocks, D, sq)
        self.decoder = Decoder(preset.hidden, preset.res_hidden, preset.res_blocks, D, sq, preset.cond_channels)
        if sq:  # predefined uniform scalar quantizer: 2^B levels on [-1, 1], not trained
            cb = torch.linspace(-1.0, 1.0, K)[None, :, None].expand(V, K, D).clone()
            self.codebooks = nn.Parameter(cb, requires_grad=False)
        else:
            g = torch.Generator().manual_seed(0)
            cb = (torch.rand(V, K, D, generator=g) * 2 - 1) / K  # replaced by data init in training
            self.codebooks = nn.Parameter(cb)
        raw0 = torch.stack([Q.raw_from_mu(max(preset.mu_init, 1.01 * m), m) for m in preset.mu_min])
        self.mu_raw = nn.Parameter(raw0[:, None, None].expand(V, N, B).clone(),
                                   requires_grad=preset.mu_fixed is None)
        self.register_buffer("mu_min", torch.tensor(preset.mu_min, dtype=torch.float32))
        self.register_buffer("bits", Q.bit_table(B), persistent=False)
        if preset.decoder_input == "posterior":
            # running label usage [V, N, K] of the nearest labels (the soft receiver's prior);
            # not saved: a fine-tune or a resume re-estimates it within a few hundred steps
            self.register_buffer("label_usage", torch.zeros(V, N, K), persistent=False)

        self.frozen: list | None = None  # (tensor, index, value) held by freeze_codebook1_path

    @torch.no_grad()
    def freeze_codebook1_path(self) -> None:
        """Start holding codebook 1's path (``preset.freeze``): snapshot the held entries, which
        :meth:`restore_frozen` writes back after every optimiser step (exact whatever the
        optimiser's state, and the same on every DDP rank); the encoder gets no gradient."""
        mode = self.preset.freeze
        if mode is None or self.frozen is not None:
            return
        held = [(t, None) for t in self.encoder.parameters()] + [(self.codebooks, 0)]
        if mode == "codebook1":
            dec = self.decoder
            cond = {id(t) for m in [dec.cond_in, *dec.cond_res] for t in m.parameters()}
            held += [(t, None) for t in dec.parameters() if id(t) not in cond]
            for m in [dec.cond_in, *dec.cond_res]:
                held += [(m.weight, (slice(None), 0)), (m.bias, None)]
        self.frozen = [(t, i, (t if i is None else t[i]).detach().clone()) for t, i in held]

    @torch.no_grad()
    def restore_frozen(self) -> None:
        """Write the held entries back (no-op unless :meth:`freeze_codebook1_path` ran)."""
        for t, i, v in self.frozen or ():
            if i is None:
                t.copy_(v)
            else:
                t[i] = v

    # ---- public API (docs/interfaces.md) ----
    def mu(self) -> torch.Tensor:
        """Bit-flip probabilities ``[V, N, B]`` in ``[mu_min^(v), 0.5]`` (the constant
        ``preset.mu_fixed`` for the fixed-BSC baselines)."""
        if self.preset.mu_fixed is not None:
            return torch.full_like(self.mu_raw, float(self.preset.mu_fixed))
        return Q.mu_from_raw(self.mu_raw, self.mu_min)

    def quantize_indices(self, z: torch.Tensor, v: int) -> torch.Tensor:
        """Labels ``[b, N]`` of codebook ``v`` (0-based) for latent ``z [b, D, h, w]``."""
        return Q.nearest(Q.to_subvectors(z), self.codebooks[v])

    def lookup(self, idx: torch.Tensor, v: int, hw: tuple[int, int]) -> torch.Tensor:
        """Codewords of labels ``idx [b, N]`` as a latent ``[b, D, h, w]``."""
        return Q.from_subvectors(self.codebooks[v][idx], *hw)

    def decode(self, zq: torch.Tensor, codebooks: int | torch.Tensor) -> torch.Tensor:
        """Decoder output of ``zq [b, D, h, w]`` whose sub-vectors came on ``codebooks``
        (one 0-based index for all, or ``[b, N]`` long, ``V`` = not sent); the codebook map
        is fed only to a reliability-aware decoder."""
        if not self.preset.cond_channels:
            return self.decoder(zq)
        b, _, h, w = zq.shape
        if not torch.is_tensor(codebooks):
            codebooks = torch.full((b, h * w), int(codebooks), dtype=torch.long, device=zq.device)
        return self.decoder(zq, Q.codebook_map(codebooks, self.preset.V, h, w))

    @torch.no_grad()
    def init_codebook_from_data(self, z: torch.Tensor, v: int, generator: torch.Generator) -> None:
        """Data initialisation: codebook ``v`` := random sub-vectors of ``z`` (with replacement if few)."""
        zs = Q.to_subvectors(z).reshape(-1, self.preset.D)
        K = self.preset.K
        if zs.shape[0] >= K:
            sel = torch.randperm(zs.shape[0], generator=generator, device=zs.device)[:K]
        else:
            sel = torch.randint(0, zs.shape[0], (K,), generator=generator, device=zs.device)
        noise = 0.01 * zs.std() * torch.randn(K, self.preset.D, generator=generator, device=zs.device)
        self.codebooks.data[v] = zs[sel] + noise

    @torch.no_grad()
    def copy_codebook(self, src: int, dst: int) -> None:
        """Algorithm 1: B^(v) := B^(v-1), mu^(v) := mu^(v-1) (clipped up to mu_min^(v))."""
        self.codebooks.data[dst] = self.codebooks.data[src]
        mu_src = self.mu()[src]
        m = float(self.mu_min[dst])
        self.mu_raw.data[dst] = Q.raw_from_mu(mu_src.clamp_min(m * 1.01), m)
        self.bound_mu_raw()

    @torch.no_grad()
    def bound_mu_raw(self) -> None:
        """Clamp ``mu_raw`` to ``>= preset.mu_raw_min`` (no-op when it is None)."""
        if self.preset.mu_raw_min is not None:
            self.mu_raw.data.clamp_(min=float(self.preset.mu_raw_min))

    def forward(self, x: torch.Tensor, stage: int, tau: float, generator: torch.Generator | None = None):
        """Loss (27) of stage ``stage`` (1-based) on a normalised batch ``x``.

        Returns ``(loss, stats)``; ``stats`` holds detached per-codebook ``d0``, ``d1``, ``R``,
        ``mse`` (normalised units) and the hard labels ``idx [v, b, N]``.

        Options of the preset (all off by default, i.e. the paper's Algorithm 1):
        ``commit_clean`` (commitment to the nearest codeword), ``encoder_grad_codebooks``
        (codebooks above it send no gradient into the encoder), ``schedule == "joint-draw"``
        (each sample decoded through one codebook drawn with (27)'s weights), ``noise ==
        "gray"`` (per-position Gray 16-QAM flips and erasures to the batch-mean latent).
        """
        p = self.preset
        z = self.encoder(x)
        b, D, h, w = z.shape
        zs = Q.to_subvectors(z)  # [b, N, D]
        if zs.shape[1] != p.N:
            raise ValueError(f"latent has {zs.shape[1]} sub-vectors, the model's mu expects N={p.N}")
        mu = self.mu()
        k_enc = stage if p.encoder_grad_codebooks is None else p.encoder_grad_codebooks
        if self.frozen is not None:
            k_enc = 0  # the encoder is held: nothing needs its gradient
        gray = p.noise == "gray"
        zmean = zs.detach().mean(0) if gray else None  # [N, D]: the receiver's substitute of an erased sub-vector
        zts, idxs, d1s, Rs, cbmaps = [], [], [], [], []
        for u in range(stage):
            cb = self.codebooks[u]
            with torch.no_grad():
                idx = Q.nearest(zs.detach(), cb)
            mu_u = self._gray_mu(mu[u], b, generator) if gray else mu[u]
            logp = Q.transition_logprob(idx, mu_u, self.bits)
            e = Q.gumbel_softmax(logp, tau, generator)  # [b, N, K]
            zt = e @ cb  # sample (25), [b, N, D]
            z_enc = zs if u < k_enc else zs.detach()  # codebooks > k: nothing reaches the encoder
            d1 = L.d1(z_enc, zt, p.beta, cb[idx] if p.commit_clean else None)
            R = L.regulariser(mu[u], p.regulariser) if p.mu_fixed is None else zs.new_zeros(())  # (22)
            z_dec = self._posterior_mean(idx, mu_u, u, generator) if p.decoder_input == "posterior" else zt
            zhat = z_enc + (z_dec - z_enc).detach()  # (14)
            cbu = torch.full((b, p.N), u, dtype=torch.long, device=z.device) if p.cond_channels else None
            if gray and p.erase_prob is not None and p.erase_prob[u] > 0:
                rate = p.erase_prob[u]
                if p.erase_dist == "uniform":  # one rate per sample, uniform on [0, 2 erase_prob]
                    rate = 2 * rate * torch.rand(b, 1, generator=generator, device=z.device)
                er = torch.rand(b, p.N, generator=generator, device=z.device) < rate
                zhat = torch.where(er[..., None], zmean[None].expand_as(zhat), zhat)
                if cbu is not None:
                    cbu = torch.where(er, p.V, cbu)
            zts.append(zhat)
            cbmaps.append(cbu)
            idxs.append(idx)
            d1s.append(d1)
            Rs.append(R)
        if p.cond_mix > 0 and stage > 1:
            zts, cbmaps = self._mix(zts, cbmaps, generator)
        zts = [Q.from_subvectors(t, h, w) for t in zts]
        conds = [Q.codebook_map(c, p.V, h, w) for c in cbmaps] if p.cond_channels else None
        if p.schedule == "joint-draw":
            wts = L.stage_weights(stage, p.eta, zs.dtype, z.device)
            draw = torch.multinomial(wts, b, replacement=True, generator=generator)  # [b]
            ar = torch.arange(b, device=z.device)
            zin = torch.stack(zts, 0)[draw, ar]
            cin = (torch.stack(conds, 0)[draw, ar],) if conds else ()
            err = ((self.decoder(zin, *cin) - x) ** 2).flatten(1).mean(1)  # [b]
            onehot = F.one_hot(draw, stage).to(err.dtype)  # [b, stage]
            d0s = (onehot * err[:, None].detach()).sum(0) / onehot.sum(0).clamp_min(1.0)
            lam = torch.tensor(list(p.lambdas)[:stage], dtype=err.dtype, device=err.device)
            # the drawn d0 is an unbiased estimate of (27)'s weighted d0 sum
            loss = err.mean() + (wts * (torch.stack(d1s) + lam * torch.stack(Rs))).sum()
        else:
            cin = (torch.cat(conds, 0),) if conds else ()
            xh = self.decoder(torch.cat(zts, 0), *cin).reshape(stage, *x.shape)
            d0s = L.d0_per_codebook(xh, x)  # [stage]
            loss = L.multi_codebook_loss(d0s, torch.stack(d1s), torch.stack(Rs), p.lambdas, p.eta)  # (27)-(29)
        stats = {
            "d0": d0s.detach(),
            "d1": torch.stack(d1s).detach(),
            "R": torch.stack(Rs).detach(),
            "idx": torch.stack(idxs),
            "z": z.detach(),
        }
        return loss, stats

    def _mix(self, zts: list, cbmaps: list, generator) -> tuple[list, list]:
        """``cond_mix``: in each pass, every sub-vector takes with probability ``cond_mix`` the
        decoder input (sample, or erasure substitute) and map label of a codebook drawn
        uniformly from the stage's, so the decoder learns mixed maps. ``zts``: per pass
        ``[b, N, D]``; ``cbmaps``: per pass ``[b, N]`` long."""
        stage = len(zts)
        allz, allc = torch.stack(zts, 0), torch.stack(cbmaps, 0)  # [stage, b, N, D], [stage, b, N]
        b, n = allc.shape[1:]
        dev = allc.device
        ar_b, ar_n = torch.arange(b, device=dev)[:, None], torch.arange(n, device=dev)[None, :]
        out_z, out_c = [], []
        for u in range(stage):
            swap = torch.rand(b, n, generator=generator, device=dev) < self.preset.cond_mix
            src = torch.where(swap, torch.randint(0, stage, (b, n), generator=generator, device=dev), u)
            out_z.append(allz[src, ar_b, ar_n])
            out_c.append(allc[src, ar_b, ar_n])
        return out_z, out_c

    @torch.no_grad()
    def _posterior_mean(self, idx: torch.Tensor, mu_u: torch.Tensor, u: int, generator) -> torch.Tensor:
        """``decoder_input="posterior"``: sent labels ``idx [b, N]`` of codebook ``u``, flip
        probabilities ``mu_u`` (``[N, B]`` or per sample ``[b, N, B]``) -> the posterior-mean
        codeword ``[b, N, D]`` of a received label drawn from them: ``p(k | r) ~ usage(k) p(r | k)``
        with ``p(r | k)`` the bit-flip channel (24) at ``mu_u`` and ``usage`` the codebook's running
        label usage per position (updated here from ``idx`` in training mode)."""
        K = self.preset.K
        if self.training:
            onehot = F.one_hot(idx, K).to(self.label_usage.dtype).mean(0)  # [N, K]
            d = self.preset.usage_decay
            self.label_usage[u].mul_(d).add_(onehot, alpha=1.0 - d)
        mu_u = mu_u.detach()
        recv = Q.flip_labels(idx, mu_u, self.bits, generator)
        usage = self.label_usage[u]
        # a label not seen lately keeps a small prior (1/64 of uniform); all-zero usage: uniform
        log_prior = torch.log(usage / usage.sum(-1, keepdim=True).clamp_min(1e-30) + 1.0 / (64 * K))  # [N, K]
        return Q.posterior_mean(recv, mu_u, log_prior, self.codebooks[u].detach(), self.bits)

    def _gray_mu(self, mu: torch.Tensor, b: int, generator) -> torch.Tensor:
        """Per-sample flip probabilities ``[b, N, B]`` of ``noise="gray"``: each bit lands on a
        random Gray 16-QAM position, strong (sign) or weak with probability 1/2, whose exact BER
        at the power meeting ``mu`` on average is ``mu * r_s(mu)`` or ``mu * (2 - r_s(mu))``
        (``r_s`` interpolated from a table, detached: the gradient to mu is the ratio)."""
        grid, rs = _gray_ratio_table(mu.device)
        with torch.no_grad():
            lm = torch.log(mu.detach().double().clamp(1e-8, 0.5))
            pos = torch.searchsorted(grid, lm.reshape(-1)).clamp(1, grid.numel() - 1)
            t = (lm.reshape(-1) - grid[pos - 1]) / (grid[pos] - grid[pos - 1])
            r = (rs[pos - 1] + t * (rs[pos] - rs[pos - 1])).reshape(mu.shape).to(mu.dtype)
            strong = torch.rand((b, *mu.shape), generator=generator, device=mu.device) < 0.5
            ratio = torch.where(strong, r[None], 2.0 - r[None])
        return (mu[None] * ratio).clamp(max=0.5)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, v: int, flip_mu: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Hard-path reconstruction through codebook ``v`` (0-based); bits flipped with
        probability ``flip_mu [N, B]`` if given (``generator`` draws the flips)."""
        z = self.encoder(x)
        hw = z.shape[-2:]
        idx = self.quantize_indices(z, v)
        if flip_mu is not None:
            idx = Q.flip_labels(idx, flip_mu, self.bits, generator)
        return self.decode(self.lookup(idx, v, hw), v)
