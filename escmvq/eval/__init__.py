"""Evaluation of ESC-MVQ and its baselines (Sec. V of the paper): PSNR-vs-SNR sweeps on
the torch-free runtime, confidence intervals, the JPEG+LDPC baseline and the figures.

Submodules are imported lazily by their users; importing ``escmvq.eval`` itself is cheap
and pulls in neither torch nor matplotlib:

- :mod:`escmvq.eval.stats`: per-image PSNR, mean with a Student-t 95% confidence interval.
- :mod:`escmvq.eval.datasets`: CIFAR-10 test images and Kodak tiles (numpy + Pillow only).
- :mod:`escmvq.eval.driver`: the one sweep loop (:func:`~escmvq.eval.driver.simulate`: seeds,
  batching, realisations, statistics) and the ``Link`` protocol every method implements.
- :mod:`escmvq.eval.sweep`: the ESC-MVQ links (JCAMP / JCAP of a bundle) and K-pair sets.
- :mod:`escmvq.eval.jpeg_ldpc`: the JPEG + 5G-NR LDPC (rate 3/4) baseline (needs Sionna,
  hence torch: the ``eval`` extra), by role: codec, LLRs, LDPC code, link, calibration.
- :mod:`escmvq.eval.run`: one ``escmvq eval`` run as a call (``run_eval``), and its result document.
- :mod:`escmvq.eval.merge`: reading and merging result documents (``escmvq eval-merge``).
- :mod:`escmvq.eval.figures`: Figs. 3, 5, 6, 8 (matplotlib, Agg backend).
"""
