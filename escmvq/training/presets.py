"""Training presets (dataclasses). ``get_preset(name)`` returns "paper", "cpu" or "tiny".

Any preset trains any dataset: the trainer replaces ``image_size`` by the dataset's
tile size (32x32 for CIFAR, 96x96 for STL-10), which fixes ``N = (H/4)*(W/4)``.

Decisions the paper leaves open (docs/training.md):

- ``epochs_per_stage``: Algorithm 1 says "while not converged" per stage and the paper
  trains 128 epochs in total. Stage v runs the decoder v times per step, so later stages
  cost more; the split is recorded here.
- ``steps_per_epoch``: an "epoch" may be capped at this many batches (None = one full
  pass) so that small budgets still checkpoint often.
- ``mu_init``: initial bit-flip probability of codebook 1 (the paper: "randomly
  initialise"); a small value so the decoder does not start on pure noise.
- Losses are means over elements (d0 over pixels of the normalised image, d1 over
  latent elements), as in the reference VQ-VAE implementation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Preset", "get_preset", "preset_from_dict", "PRESET_NAMES"]


@dataclass(frozen=True)
class Preset:
    name: str
    # network (VQ-VAE of [19])
    hidden: int = 256
    res_hidden: int = 256
    res_blocks: int = 2
    # product VQ
    D: int = 4
    B: int = 9
    V: int = 5
    image_size: tuple[int, int] = (32, 32)
    # BSC / multi-codebook training
    mu_min: tuple[float, ...] = (0.0005, 0.001, 0.0045, 0.02, 0.05)
    lambdas: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0)  # 2^(v-1)/8
    eta: float = 0.8
    beta: float = 0.25
    mu_init: float = 0.01
    tau0: float = 0.5
    tau_decay: float = 0.003  # tau <- tau * exp(-tau_decay) ...
    tau_every: int = 100  # ... every tau_every iterations
    # optimisation
    batch_size: int = 64
    lr: float = 1e-3  # networks and codebooks
    lr_mu: float = 1e-2
    # optional linear decay of the network/codebook learning rate over the last part of
    # training (progress = spent budget, or completed epochs, over the total): 1.0 = off
    lr_decay_from: float = 1.0
    lr_final_frac: float = 1.0
    epochs_per_stage: tuple[int, ...] = (64, 16, 16, 16, 16)
    steps_per_epoch: int | None = None
    # codebook health
    data_init: bool = True  # codebook 1 := random encoder outputs at the start
    dead_restart_every: int = 100  # steps between dead-code checks (0 = off)
    dead_min_count: int = 1  # a codeword used fewer times in the window is dead ...
    dead_min_frac: float = 0.03  # ... or fewer than this fraction of the uniform share (window/K)
    # evaluation during training
    eval_images: int = 1000
    # baselines of Sec. V; the defaults are ESC-MVQ
    quantizer: str = "vq"  # "vq": learned codebooks; "sq": fixed uniform 2^B levels on a tanh latent
    sq_channels: int = 3  # sq only: latent channels, each entry one B-bit scalar
    mu_fixed: float | None = None  # BSC+VQ / BSC+SQ: constant, non-trainable bit-flip probability
    regulariser: str = "xlogx"  # (22) mean(mu log mu); "mse-half": BlindSC's (mean(mu) - 0.5)^2
    # lower bound on raw in mu = mu_min + (0.5 - mu_min) * sigmoid(raw), applied after every
    # step and when a codebook is copied (None = unbounded, as the shipped model was trained:
    # its floored mu drifted to raw -10..-18, where sigmoid' < 5e-5 and mu can hardly come back)
    mu_raw_min: float | None = None
    # ---- robustness options (the defaults are Algorithm 1 as in the paper) ----
    # commitment beta ||z - sg(.)||^2 to the clean nearest codeword z_q (23) instead of the
    # channel-corrupted Gumbel sample z~ (25); the codebook term stays on the sample
    commit_clean: bool = False
    # only codebooks 1..k send gradient (d0 through (14), and the commitment) into the
    # encoder; the others train the decoder, their codebooks and mu only (None = all)
    encoder_grad_codebooks: int | None = None
    # "sequential": Algorithm 1's stages; "joint": all V codebooks decoded every step from
    # the start (one stage, all epochs); "joint-draw": all V from the start, but each
    # sample decoded through one codebook drawn with (27)'s weights eta^u (one decoder pass)
    schedule: str = "sequential"
    # joint schedules: codebooks 2..V start as copies of codebook 1 ("copy") or from their
    # own random encoder outputs ("data")
    joint_init: str = "copy"
    # channel model of the training sample: "bsc" (24) at mu; "gray": each bit flipped with
    # the exact Gray 16-QAM BER of a random bit position (strong/weak) at the power that
    # meets mu on average, and sub-vectors erased (decoder input := batch-mean latent, as the
    # runtime's receiver does) with probability erase_prob[u] per codebook
    noise: str = "bsc"
    erase_prob: tuple[float, ...] | None = None
    # how a sample's erasures are drawn: "fixed": every sub-vector with erase_prob[u];
    # "uniform": each sample first draws its own rate uniformly from [0, 2 erase_prob[u]]
    # (same mean), so the decoder sees the spread of erasure rates the allocator delivers
    # (none in a good fade, most sub-vectors in a deep one)
    erase_dist: str = "fixed"
    # reliability-aware decoder: "codebook" gives the decoder a second input, the one-hot map
    # [V+1, h, w] of the codebook each sub-vector was sent on (channel V: not sent), which the
    # receiver knows from the plan; its weights start at zero (a fine-tune starts from the
    # unconditioned decoder's function). None: the paper's decoder (latent only).
    decoder_cond: str | None = None
    # with decoder_cond: probability that a sub-vector of a decoder pass takes the sample of a
    # codebook drawn uniformly from those of the stage (and is labelled so in the map), so
    # the decoder sees the mixed maps the allocator produces, not only one codebook per pass
    cond_mix: float = 0.0
    # what the decoder is fed for a sent sub-vector: "sample" (the Gumbel-Softmax sample (25)
    # behind the straight-through step (14), the paper's), or "posterior": the posterior-mean
    # codeword of a received label (the sent one with its bits flipped at the pass's flip
    # probabilities) under those probabilities and the codebook's running label usage per
    # position, i.e. what the runtime's soft receiver (MMSE estimate) hands the decoder. The
    # codebooks, mu and the commitment still train on the sample (d1, R unchanged).
    decoder_input: str = "sample"
    # "posterior": decay of the running label usage [V, N, K] (an exponential average of the
    # one-hot nearest labels of the training batches)
    usage_decay: float = 0.99
    # hold codebook 1's path from the start of stage 2 (or of a fine-tune) on, so the later,
    # noisier codebooks cannot tax its clean quality through the shared networks:
    # "encoder": the encoder and codebook 1 stay as they are (the decoder still trains);
    # "codebook1": also the decoder's backbone (every weight but the conditioning layers) and
    # the conditioning's codebook-1 channel and biases, so a codebook-1-only map decodes
    # exactly as before; the other codebooks train their codewords, mu and conditioning
    # channels (needs decoder_cond). None: everything trains (Algorithm 1).
    freeze: str | None = None

    @property
    def latent_hw(self) -> tuple[int, int]:
        """Spatial size of the latent ``[D, h, w]`` the runtime sees. For ``sq`` the
        ``sq_channels`` scalars of a position sit side by side: ``[1, H/4, W/4 * C]``."""
        h, w = self.image_size
        if self.quantizer == "sq":
            return h // 4, (w // 4) * self.sq_channels
        return h // 4, w // 4

    @property
    def N(self) -> int:
        h, w = self.latent_hw
        return h * w

    @property
    def K(self) -> int:
        return 2**self.B

    @property
    def total_epochs(self) -> int:
        return int(sum(self.epochs_per_stage))

    def validate(self) -> "Preset":
        V = self.V
        if len(self.mu_min) != V or len(self.lambdas) != V or len(self.epochs_per_stage) != V:
            raise ValueError(
                f"preset {self.name}: mu_min, lambdas and epochs_per_stage need V={V} entries"
            )
        if any(not 0 < m < 0.5 for m in self.mu_min):
            raise ValueError(f"preset {self.name}: mu_min must lie in (0, 0.5)")
        h, w = self.image_size
        if h % 4 or w % 4 or h <= 0 or w <= 0:
            raise ValueError(f"preset {self.name}: image size {h}x{w} must be a positive multiple of 4")
        if not 1 <= self.B <= 16:
            raise ValueError(f"preset {self.name}: B must be 1..16")
        if self.quantizer not in ("vq", "sq"):
            raise ValueError(f"preset {self.name}: quantizer must be 'vq' or 'sq', not {self.quantizer!r}")
        if self.quantizer == "sq" and (self.D != 1 or self.sq_channels < 1):
            raise ValueError(f"preset {self.name}: the scalar quantizer needs D=1 and sq_channels >= 1")
        if self.mu_fixed is not None and not 0 < self.mu_fixed < 0.5:
            raise ValueError(f"preset {self.name}: mu_fixed must lie in (0, 0.5)")
        if self.mu_raw_min is not None and not -50.0 <= self.mu_raw_min < 0.0:
            raise ValueError(f"preset {self.name}: mu_raw_min must lie in [-50, 0)")
        if self.regulariser not in ("xlogx", "mse-half"):
            raise ValueError(f"preset {self.name}: regulariser must be 'xlogx' or 'mse-half'")
        if self.encoder_grad_codebooks is not None and not 1 <= self.encoder_grad_codebooks <= V:
            raise ValueError(f"preset {self.name}: encoder_grad_codebooks must be None or 1..V={V}")
        if self.schedule not in ("sequential", "joint", "joint-draw"):
            raise ValueError(f"preset {self.name}: schedule must be 'sequential', 'joint' or 'joint-draw'")
        if self.joint_init not in ("copy", "data"):
            raise ValueError(f"preset {self.name}: joint_init must be 'copy' or 'data'")
        if self.noise not in ("bsc", "gray"):
            raise ValueError(f"preset {self.name}: noise must be 'bsc' or 'gray'")
        if self.erase_prob is not None and (len(self.erase_prob) != V or any(not 0 <= e < 1 for e in self.erase_prob)):
            raise ValueError(f"preset {self.name}: erase_prob needs V={V} entries in [0, 1)")
        if self.erase_dist not in ("fixed", "uniform"):
            raise ValueError(f"preset {self.name}: erase_dist must be 'fixed' or 'uniform'")
        if self.erase_dist == "uniform" and self.erase_prob is not None and max(self.erase_prob) > 0.5:
            raise ValueError(f"preset {self.name}: erase_dist 'uniform' draws rates up to 2 erase_prob, "
                             "so erase_prob must be at most 0.5")
        if self.decoder_cond not in (None, "codebook"):
            raise ValueError(f"preset {self.name}: decoder_cond must be None or 'codebook'")
        if self.decoder_cond is not None and self.quantizer != "vq":
            raise ValueError(f"preset {self.name}: decoder_cond needs the vector quantizer (quantizer='vq')")
        if not 0 <= self.cond_mix < 1:
            raise ValueError(f"preset {self.name}: cond_mix must lie in [0, 1)")
        if self.cond_mix > 0 and self.decoder_cond is None:
            raise ValueError(f"preset {self.name}: cond_mix needs decoder_cond")
        if self.decoder_input not in ("sample", "posterior"):
            raise ValueError(f"preset {self.name}: decoder_input must be 'sample' or 'posterior'")
        if self.decoder_input == "posterior" and self.quantizer != "vq":
            raise ValueError(f"preset {self.name}: decoder_input 'posterior' needs the vector quantizer (quantizer='vq')")
        if not 0 < self.usage_decay < 1:
            raise ValueError(f"preset {self.name}: usage_decay must lie in (0, 1)")
        if self.freeze not in (None, "encoder", "codebook1"):
            raise ValueError(f"preset {self.name}: freeze must be None, 'encoder' or 'codebook1'")
        if self.freeze == "codebook1" and self.decoder_cond is None:
            raise ValueError(f"preset {self.name}: freeze 'codebook1' needs decoder_cond (the conditioning layers are "
                             "what the other codebooks train)")
        if self.freeze is not None and self.schedule != "sequential":
            raise ValueError(f"preset {self.name}: freeze needs the sequential schedule (codebook 1 trains alone first)")
        if not self.eta > 0:
            raise ValueError(f"preset {self.name}: eta must be positive")
        return self

    @property
    def cond_channels(self) -> int:
        """Channels of the decoder's second input (0: none)."""
        return self.V + 1 if self.decoder_cond == "codebook" else 0

    def replace(self, **kw) -> "Preset":
        return dataclasses.replace(self, **kw).validate()

    def lambdas_for(self, V: int) -> tuple[float, ...]:
        """Stage weights for ``V`` codebooks: this preset's first ``V``, then its last doubled per
        added codebook (``escmvq train --codebooks``)."""
        return self.lambdas[:V] + tuple(self.lambdas[-1] * 2.0 ** (k + 1) for k in range(V - self.V))


_PRESETS: dict[str, Preset] = {
    # The paper's setting (Sec. V): 256 hidden units, batch 64, 128 epochs, Adam 1e-3 / 1e-2.
    "paper": Preset(name="paper"),
    # Narrower and shorter, for the 2-core CPU machine (the shipped model: ``--budget-minutes
    # 110 --stage-share 0.7,0.075,0.075,0.075,0.075``; the epoch counts are upper bounds). An "epoch" here is
    # 390 batches (half a CIFAR-10 pass, ~2-3 min) so checkpoints come often. Most of the
    # budget goes to stage 1 (codebook 1 sets the clean quality); stage v runs the decoder
    # v times per step, so later stages get fewer steps (DEFAULT_STAGE_SHARE in trainer.py).
    # lr 2e-3 (not the paper's 1e-3): on this machine a plain VQ-VAE of this size reached
    # 24.16 dB after 900 steps at 2e-3 vs 23.02 dB at 1e-3 (and 23.54 at 3e-3 after 600
    # steps, no better than 2e-3); decayed linearly to 0.1x over the last 70 % of the budget
    # (from 0.5 to 0.3 for the shipped v3 model: stage 1 ends annealed, at ~0.5x).
    "cpu": Preset(
        name="cpu",
        hidden=128,
        res_hidden=64,
        batch_size=64,
        lr=2e-3,
        epochs_per_stage=(60, 16, 16, 16, 16),  # caps; the budget (--budget-minutes) decides
        steps_per_epoch=390,
        eval_images=1000,
        lr_decay_from=0.3,
        lr_final_frac=0.1,
    ),
    # For tests: a few seconds end to end.
    "tiny": Preset(
        name="tiny",
        hidden=16,
        res_hidden=8,
        res_blocks=1,
        batch_size=8,
        epochs_per_stage=(1, 1, 1, 1, 1),
        steps_per_epoch=2,
        dead_restart_every=2,
        eval_images=16,
    ),
}

PRESET_NAMES = tuple(_PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name].validate()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}") from None


def preset_from_dict(d: dict) -> Preset:
    """Inverse of ``dataclasses.asdict`` (lists back to tuples, unknown keys rejected).
    Fields missing from ``d`` (older checkpoints) come from the named preset if it exists."""
    names = {f.name for f in dataclasses.fields(Preset)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"preset: unknown fields {sorted(unknown)}")
    base = dataclasses.asdict(_PRESETS[d["name"]]) if d.get("name") in _PRESETS else {}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in {**base, **d}.items()}
    return Preset(**kw).validate()
