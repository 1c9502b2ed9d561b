"""Sionna's 5G NR LDPC over Gray QAM: as many code blocks as the symbol budget needs, belief
propagation in stages with CRC-aided early termination (the payload ends in a CRC-32)."""
from __future__ import annotations

import math
import zlib

import numpy as np

from escmvq.eval.jpeg_ldpc.llr import qam_llr

__all__ = ["LdpcCode"]


class LdpcCode:
    """One modulation order: C code blocks of (k_c, n_c), Sionna encoder/decoder, mapper.

    m : bits per symbol; n_symbols : symbols available; rate : code rate; stages : BP
    iterations per stage (CRC-aided early termination between stages).
    """

    def __init__(self, m: int, n_symbols: int, rate: float, stages):
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
        from sionna.phy.mapping import Mapper

        self.m = m
        n_avail = n_symbols * m
        C = 1
        while True:
            n_c = (n_avail // C) // m * m
            k_c = int(math.floor(rate * n_c))
            if k_c <= 8448:
                break
            C += 1
        self.C, self.n_c, self.k_c = C, n_c, k_c
        self.n_sym = C * n_c // m
        self.capacity = (C * k_c) // 8  # bytes
        self.enc = LDPC5GEncoder(k_c, n_c, num_bits_per_symbol=m)
        self.dec = LDPC5GDecoder(self.enc, hard_out=True, return_infobits=True, return_state=True,
                                 num_iter=int(stages[0]))
        self.mapper = Mapper("qam", m)
        self.stages = tuple(int(s) for s in stages)

    def encode(self, payload: np.ndarray):
        """``payload [g, capacity]`` uint8 -> symbols ``[g, n_sym]`` complex64 (numpy)."""
        import torch

        g = payload.shape[0]
        bits = np.unpackbits(payload, axis=1)
        full = np.zeros((g, self.C * self.k_c), np.float32)
        full[:, : bits.shape[1]] = bits
        cw = self.enc(torch.from_numpy(full.reshape(g, self.C, self.k_c)))  # [g, C, n_c]
        s = self.mapper(cw.reshape(g, -1))
        return s.numpy().astype(np.complex64)

    def decode(self, y: np.ndarray, no: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Equalised ``y [g, n_sym]`` complex, ``no [g]`` effective noise variance ->
        (payload bytes ``[g, capacity]``, CRC ok ``[g]`` bool, iterations used ``[g]``)."""
        import torch

        g = y.shape[0]
        llr = qam_llr(torch.from_numpy(y.astype(np.complex64)), self.m,
                      torch.from_numpy(no.astype(np.float32))).reshape(g * self.C, self.n_c)
        cap = self.capacity
        out = np.zeros((g, cap), np.uint8)
        ok = np.zeros(g, bool)
        iters = np.zeros(g, np.int64)
        active = np.arange(g)
        msg = None
        llr_a = llr
        for si, it in enumerate(self.stages):
            rows = (active[:, None] * self.C + np.arange(self.C)[None]).ravel()
            if si == 0:
                u, msg = self.dec(llr_a, num_iter=it)
            else:
                u, msg = self.dec(llr_a, num_iter=it, msg_v2c=msg)
            iters[active] += it
            bits = u.reshape(len(active), self.C * self.k_c).numpy().astype(np.uint8)
            pay = np.packbits(bits[:, : cap * 8], axis=1)
            good = np.array([zlib.crc32(p[:-4].tobytes()) == int.from_bytes(p[-4:].tobytes(), "big") for p in pay], bool)
            out[active] = pay
            ok[active[good]] = True
            keep = ~good
            if not keep.any():
                break
            active = active[keep]
            sel = torch.from_numpy(np.repeat(keep, self.C))
            llr_a = llr[torch.from_numpy(rows)][sel]
            msg = msg.reshape(len(rows), -1)[sel]
        return out, ok, iters
