"""JCAP / JCAMP allocators (Sec. IV): codebook assignment, modulation and power.

- :func:`jcap`, :func:`jcamp`: the iterative algorithms, one call per channel.
- :class:`Allocator`: the same answers from a precomputed trajectory in microseconds.
- :class:`Plan`: the result; ``.codebooks``, ``.orders``, ``.powers``, ``.bit_order``.
- :func:`jcap_literal`: Algorithm 3 transcribed without caching (benchmark reference).
"""
from .allocator import Allocator
from .iterative import jcamp, jcap
from .plan import Plan
from .reference import jcap_literal

__all__ = ["Allocator", "Plan", "jcap", "jcamp", "jcap_literal"]
