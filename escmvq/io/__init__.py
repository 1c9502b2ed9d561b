"""Files in and out, torch-free (numpy and Pillow; matplotlib only inside the figure
functions), on the bottom floor beside ``escmvq.core``: nothing here imports another
``escmvq`` package, so the runtime, evaluation, export and training can all use it.

- :mod:`escmvq.io.paths`: where the data folder is (``--data-dir``-style option, then
  ``$ESCMVQ_DATA``).
- :mod:`escmvq.io.jpeg_pack`: images stored as JPEG files back to back (``jpeg`` +
  ``offsets`` arrays, the CIFAR-10 files of the shared data folder).
- :mod:`escmvq.io.files`: atomic writes (temporary file beside the target, then rename).
- :mod:`escmvq.io.figures`: PNG figures written atomically, and Fig. 3 (CDF of mu).
- :mod:`escmvq.io.provenance`: the format header and environment of JSON results.
"""
