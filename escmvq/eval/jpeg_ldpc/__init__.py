"""The JPEG + LDPC baseline (Sec. V): separate source and channel coding.

Pipeline per image, SNR point and realisation (block fading, one ``h`` per image, perfect
CSI at both ends as for ESC-MVQ):

1. **Modulation** ``m`` in {2, 4, 6, 8, 10} bits per symbol (the paper: "adaptively
   adjusted within 2 to 10"): the largest ``m`` whose threshold SNR (rate-3/4 code on
   AWGN, block error rate 10%; :data:`DEFAULT_THRESHOLDS_DB`, re-measurable with
   :func:`calibrate_thresholds`) is at most the instantaneous per-symbol SNR
   ``|h|^2 p / sigma^2``; below every threshold ``m = 2``. More than ``outage_margin_db``
   (default 2 dB) below the lowest threshold the transmitter, which knows ``h`` as
   ESC-MVQ's does, declares an outage and sends nothing (no rate-3/4 frame of this length
   decodes there: the 5G code's waterfall is about 1 dB wide); this also saves the 20 BP
   iterations such hopeless frames would cost. ``outage_margin_db=None`` always sends.
2. **Source**: Pillow's baseline JPEG (4:2:0, IJG tables) at the highest quality in
   1..100 whose payload fits the bit budget of ``m`` (binary search).
   *Header compression* (decision, :data:`HEADERS` = "stripped" by default): the JPEG
   headers of a given quality and image size are a pure function of both (standard IJG
   quantisation tables, standard Huffman tables, fixed SOF/SOS), so only a quality byte
   and the entropy-coded scan are sent and the receiver re-creates the header. Sending
   whole JFIF files ("full", Huffman-optimised) costs ~310 bytes of header per 32x32
   image, more than the whole QPSK budget; the stripped form is the stronger baseline.
   Payload: ``[quality:1][length:2][scan][zeros][CRC-32:4]``.
3. **Channel code**: Sionna's 5G NR LDPC (rate 3/4, rate matching and the 5G bit
   interleaver for ``m``), as many code blocks as needed (k <= 8448 each), over a symbol
   budget ``symbol_factor * T`` (8x for CIFAR, the paper's choice).
4. **Modem**: Sionna's Gray QAM (unit energy), received ``y = h sqrt(p) s + n``;
   max-log LLRs per axis (a square QAM is two Gray PAMs; identical to the 2-D max-log).
5. **Decoding**: belief propagation (boxplus-phi, flooding) in stages of
   :data:`DEFAULT_STAGES` iterations (20 in total); after each stage the blocks whose
   CRC-32 passes stop (CRC-aided early termination, as real receivers do).
6. A frame in outage, whose CRC still fails, whose JPEG does not fit the budget at any
   quality, or that Pillow cannot decode, is shown as the **mean image** (pixelwise mean of the
   evaluated images); the sweep reports how often each happens.

Power (decision): at a given SNR the JPEG frame has the same total energy ``P_tot`` of
eq. (53) as the ESC-MVQ frame it is compared with (``energy="total"``, the default), spread
evenly over its ``symbol_factor * T`` symbols: it gets 8x the bandwidth, not 8x the energy.
``energy="per-symbol"`` gives every symbol ESC-MVQ's average power ``P_tot / T`` instead
(8x the energy; about 9 dB more per symbol).

Caveat for CIFAR-10 here: the shared copy was itself decoded from quality-75 JPEGs, so
re-encoding it with JPEG at high quality is nearly lossless (about 47 dB at quality 100):
this favours the JPEG baseline at high SNR far more than the original CIFAR-10 would.

Modules by role: :mod:`.codec` (JPEG at a byte budget, header compression), :mod:`.llr`
(max-log QAM LLRs), :mod:`.ldpc` (the 5G code with CRC-aided early termination),
:mod:`.link` (modulation choice, power, the whole link and its sweep
:class:`~escmvq.eval.driver.Link`) and :mod:`.calibrate` (the threshold measurement).

Needs ``sionna-no-rt`` (PyTorch): the ``eval`` extra. Imported lazily by the CLI.
"""
from __future__ import annotations

from escmvq.eval.jpeg_ldpc.calibrate import calibrate_thresholds
from escmvq.eval.jpeg_ldpc.codec import HEADERS, JpegCodec
from escmvq.eval.jpeg_ldpc.ldpc import LdpcCode
from escmvq.eval.jpeg_ldpc.link import (DEFAULT_STAGES, DEFAULT_THRESHOLDS_DB, ORDERS, JpegLdpc, JpegLdpcMethod,
                                        sweep_jpeg_ldpc)
from escmvq.eval.jpeg_ldpc.llr import qam_llr

__all__ = ["ORDERS", "DEFAULT_THRESHOLDS_DB", "DEFAULT_STAGES", "HEADERS", "JpegCodec", "JpegLdpc",
           "sweep_jpeg_ldpc", "calibrate_thresholds", "JpegLdpcMethod", "LdpcCode", "qam_llr"]
