"""`escmvq link --snr 10 IMAGE` in Python: shipped bundle, Rayleigh block fading per tile, seed 0."""
import sys

import numpy as np

from escmvq.runtime import Receiver, Transmitter, load_image, psnr, through_channel

image, snr_db = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
tx = Transmitter()                        # the shipped bundle (escmvq/models/default)
rx = Receiver(tx.bundle)                  # both ends hold the same bundle, hence the same plans
img = load_image(image)                   # [H, W, 3] uint8
rng = np.random.default_rng(0)            # channel draws, as `escmvq link --seed 0`
sent = tx.send_image(img, snr_db, rng)    # one h ~ CN(0, 1) per tile; samples sqrt(p_t) s_t
received, _ = through_channel(sent, rng)  # y = h x + n
out = rx.receive_frame(received, rng)     # [H, W, 3] uint8
print(f"PSNR {psnr(img, out):.3f} dB")
