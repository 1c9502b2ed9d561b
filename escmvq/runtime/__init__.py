"""Torch-free runtime: allocators, transmitter and receiver (numpy + onnxruntime).

The whole link in Python (what ``escmvq link`` does; see ``examples/link_in_python.py``)::

    from escmvq.runtime import Receiver, Transmitter, load_image, run_link
    tx = Transmitter()            # the shipped bundle; both ends must use the same one
    rx = Receiver(tx.bundle)
    report = run_link(tx, rx, load_image("kodim23.png"), 10.0, np.random.default_rng(0))
    report.psnr_db, report.image  # dB, [H, W, 3] uint8

Dependencies point one way: ``escmvq.core`` <- allocator adapter and bundle <- transmitter /
receiver <- link; this package must never import torch or ``escmvq.training``
(tests/test_no_torch.py, tests/test_runtime_notorch.py).
"""
from escmvq.core.alloc import Allocator, Plan, jcamp, jcap
from escmvq.core.channels import apply_channel, channel_gamma, draw_h, snr_db_to_ptot
from escmvq.runtime.bundle import Bundle, BundleError, load_bundle
from escmvq.runtime.frame import Frame, FrameError
from escmvq.runtime.images import load_image, psnr
from escmvq.runtime.link import LinkReport, run_link, through_channel
from escmvq.runtime.receiver import Receiver, receive_frame
from escmvq.runtime.transmitter import Transmitter, transmit_image

__all__ = ["Allocator", "Plan", "jcamp", "jcap", "Bundle", "BundleError", "load_bundle", "Receiver", "Transmitter",
           "run_link", "LinkReport", "through_channel", "transmit_image", "receive_frame", "Frame", "FrameError", "load_image",
           "psnr", "draw_h", "apply_channel", "channel_gamma", "snr_db_to_ptot"]
