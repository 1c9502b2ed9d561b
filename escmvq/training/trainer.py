"""Algorithm 1: sequential multi-codebook training, with checkpoints, resume and DDP.

Stage v (1-based) trains codebooks 1..v with loss (27); at its start codebook v and mu^(v)
are copied from v-1 (Algorithm 1). A stage ends after ``preset.epochs_per_stage[v-1]``
epochs or, with a wall-clock budget, when its share ``budget * stage_share[v-1]`` is spent.

Codebook health: codebook 1 is initialised from encoder outputs (``preset.data_init``), and
every ``preset.dead_restart_every`` steps a codeword of a trained codebook that was chosen
fewer than ``preset.dead_min_count`` times in that window is reset to a random encoder
sub-vector of the current batch (its Adam moments are zeroed). Per epoch the log shows
perplexity and dead codewords per codebook.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from escmvq.core import pvq
from escmvq.training import quantizer as Q
from escmvq.training.checkpoint import load_checkpoint, save_checkpoint
from escmvq.training.data import ImageSet
from escmvq.training.ddp import local_rank, rank_world
from escmvq.training.metrics import MetricsWriter
from escmvq.training.model import ESCMVQ
from escmvq.training.presets import Preset

__all__ = ["TrainConfig", "train", "psnr_per_image", "to_input", "encode_all", "compute_distortion",
           "DEFAULT_STAGE_SHARE", "init_weights_from"]

# Share of a wall-clock budget per stage (stage v costs about 1 + v network passes per step).
DEFAULT_STAGE_SHARE = (0.7, 0.075, 0.075, 0.075, 0.075)  # models/cifar10-cpu.ckpt (run v3)


@dataclass
class TrainConfig:
    preset: Preset
    data: ImageSet
    out: Path
    seed: int = 0
    resume: bool = False
    budget_minutes: float | None = None
    stage_share: tuple[float, ...] = DEFAULT_STAGE_SHARE
    threads: int | None = None
    log_every: int = 50
    distortion_images: int | None = None  # None: whole training set
    dead_restart: bool | None = None  # None: preset's setting
    data_init: bool | None = None
    epochs_override: tuple[int, ...] | None = None  # applied on --resume too
    # fine-tune: load the weights (encoder, decoder, codebooks, mu clipped up to this preset's
    # floors) of this checkpoint, then run a fresh schedule (new optimizer, step 0) without
    # re-initialising or copying codebooks at the stage starts
    init_from: Path | None = None
    progress: bool = True
    console: object = None
    tensorboard: bool = False  # also write the metrics.jsonl scalars to OUT/tensorboard
    # torch device of the model and the batches: "cpu", "cuda", "cuda:N", or "auto" (cuda when
    # available); under torchrun, "cuda" means cuda:LOCAL_RANK. The data permutation stays on
    # the CPU generator (same batches on every device); the Gumbel/flip noise is drawn on the device.
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


def to_input(x_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``[b, H, W, 3]`` -> normalised float ``[b, 3, H, W]``."""
    x = x_u8.permute(0, 3, 1, 2).float() / 255.0
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


def psnr_per_image(x_u8: torch.Tensor, xh_norm: torch.Tensor, mean, std) -> torch.Tensor:
    """PSNR (52) per image, MAX = 255, of the decoder output rounded to 8 bits."""
    xh = (xh_norm * std[None, :, None, None] + mean[None, :, None, None]).clamp(0, 1)
    xh = torch.round(xh * 255.0)
    ref = x_u8.permute(0, 3, 1, 2).float()
    mse = ((xh - ref) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(255.0**2 / mse)


def _dist() -> tuple[int, int]:
    return rank_world()


def resolve_device(name: str) -> torch.device:
    """``--device`` -> a torch device: "cpu", "cuda" (``cuda:LOCAL_RANK`` under torchrun, else
    ``cuda:0``: :func:`~escmvq.training.ddp.local_rank`), "cuda:N", or "auto"
    (cuda when available, else cpu). Raises ValueError, in one line, for an unknown name or a
    CUDA device this torch build or machine does not have."""
    name = (name or "cpu").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available (torch {torch.__version__}, "
                             f"built with CUDA {torch.version.cuda}); use --device cpu")
        try:
            dev = torch.device(name if ":" in name else f"cuda:{local_rank()}")
        except RuntimeError:
            raise ValueError(f"--device {name}: not a device name (cpu, cuda, cuda:N or auto)") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise ValueError(f"--device {name}: not a device name (cpu, cuda, cuda:N or auto)")


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_all(model: ESCMVQ, images: np.ndarray, mean, std, batch: int = 256):
    """Yield ``zs [b, N, D]`` numpy latents of ``images`` (for the distortion table), on the
    model's device."""
    dev = _model_device(model)
    mean, std = mean.to(dev), std.to(dev)
    for i in range(0, len(images), batch):
        x = to_input(torch.from_numpy(images[i:i + batch]).to(dev), mean, std)
        z = model.encoder(x)
        yield Q.to_subvectors(z).cpu().numpy().astype(np.float64)


def compute_distortion(model: ESCMVQ, images: np.ndarray, mean, std) -> np.ndarray:
    """Table (31) ``[V, N]`` with the numpy :func:`escmvq.core.pvq.distortion_table`."""
    cb = model.codebooks.detach().cpu().numpy().astype(np.float64)
    mu = model.mu().detach().cpu().numpy().astype(np.float64)
    return pvq.distortion_table(encode_all(model, images, mean, std), cb, mu)


@torch.no_grad()
def evaluate(model: ESCMVQ, images: np.ndarray, mean, std, stages: int, batch: int = 250) -> dict:
    """Clean PSNR per codebook, usage (perplexity, dead) per codebook on ``images``."""
    model.eval()
    p = model.preset
    dev = _model_device(model)
    mean, std = mean.to(dev), std.to(dev)
    ps = [[] for _ in range(stages)]
    counts = torch.zeros(stages, p.K, dtype=torch.long, device=dev)
    for i in range(0, len(images), batch):
        xu = torch.from_numpy(images[i:i + batch]).to(dev)
        x = to_input(xu, mean, std)
        z = model.encoder(x)
        for v in range(stages):
            idx = model.quantize_indices(z, v)
            counts[v] += torch.bincount(idx.flatten(), minlength=p.K)
            xh = model.decode(model.lookup(idx, v, z.shape[-2:]), v)
            ps[v].append(psnr_per_image(xu, xh, mean, std))
    model.train()
    return {
        "psnr": [float(torch.cat(a).mean()) for a in ps],
        "perplexity": [Q.perplexity(c) for c in counts],
        "dead": [int((c == 0).sum()) for c in counts],
    }


def _mu_stats(model: ESCMVQ, stages: int) -> list[dict]:
    mu = model.mu().detach()
    return [{"mean": float(mu[v].mean()), "median": float(mu[v].median()),
             "min": float(mu[v].min()), "max": float(mu[v].max())} for v in range(stages)]


class _Log:
    def __init__(self, console, rank):
        self.console = console
        self.rank = rank

    def __call__(self, msg: str):
        if self.rank == 0 and self.console is not None:
            self.console.print(msg, highlight=False, soft_wrap=True)


def train(cfg: TrainConfig) -> dict:
    """Run Algorithm 1 as configured; returns the summary dict (also saved in the checkpoint)."""
    rank, world = _dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    preset = cfg.preset.replace(image_size=cfg.data.image_size)
    log = _Log(cfg.console, rank)
    out = Path(cfg.out)
    last = out / "last.ckpt"
    dead_restart = preset.dead_restart_every > 0 if cfg.dead_restart is None else cfg.dead_restart
    data_init = preset.data_init if cfg.data_init is None else cfg.data_init
    if preset.quantizer == "sq":  # predefined levels: nothing to initialise or restart
        dead_restart = data_init = False

    norm = cfg.data.normalisation()
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    train_u8 = torch.from_numpy(cfg.data.train)
    eval_imgs = cfg.data.test[: preset.eval_images] if len(cfg.data.test) else cfg.data.train[: preset.eval_images]

    with torch.random.fork_rng(devices=[]):  # the initial weights follow --seed; the caller's RNG is untouched
        torch.manual_seed(cfg.seed)
        model = ESCMVQ(preset)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)  # gumbel noise, restarts
    data_gen = torch.Generator().manual_seed(cfg.seed)  # same permutation on every rank
    stage, epoch, step = 1, 0, 0
    stage_done = False
    stage_elapsed = [0.0] * preset.V
    history: list[dict] = []
    resumed = None
    wall_before = 0.0  # wall time of the earlier processes of a resumed run (their finished epochs)

    def make_opt(m):
        # fixed (SQ) codebooks and fixed mu (BSC baselines) are not trained; group 0 stays the
        # networks (its lr follows the decay schedule)
        nets = list(m.encoder.parameters()) + list(m.decoder.parameters()) + [m.codebooks]
        groups = [{"params": [t for t in nets if t.requires_grad], "lr": preset.lr}]
        if m.mu_raw.requires_grad:
            groups.append({"params": [m.mu_raw], "lr": preset.lr_mu})
        return torch.optim.Adam(groups)

    opt = make_opt(model)
    if cfg.init_from is not None and not cfg.resume:
        norm = init_weights_from(model, cfg.init_from)
        mean = torch.tensor(norm["mean"], dtype=torch.float32)
        std = torch.tensor(norm["std"], dtype=torch.float32)
        opt = make_opt(model)
        log(f"weights from {cfg.init_from} (fresh schedule, codebooks kept)")
    joint = preset.schedule != "sequential"
    if joint and not cfg.resume:
        stage = preset.V  # one stage: every codebook from the start
    if "command" in cfg.extra and not cfg.resume:
        cfg.extra["commands"] = [cfg.extra["command"]]
    if cfg.resume:
        if not last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        model, ck = load_checkpoint(last)
        model.train()
        if tuple(ck["preset"]["image_size"]) != tuple(preset.image_size):
            raise ValueError(f"--resume: checkpoint image size {ck['preset']['image_size']} != dataset {preset.image_size}")
        preset = model.preset
        joint = preset.schedule != "sequential"
        if cfg.epochs_override is not None:
            preset = preset.replace(epochs_per_stage=tuple(cfg.epochs_override))
            model.preset = preset
        opt = make_opt(model)
        if "optimizer" in ck:
            opt.load_state_dict(ck["optimizer"])
        stage, epoch, step = int(ck["stage"]), int(ck["epoch"]), int(ck["step"])
        stage_done = bool(ck.get("stage_done", False))
        stage_elapsed = list(ck.get("stage_elapsed", stage_elapsed))
        history = list(ck.get("history", []))
        wall_before = float(ck.get("wall_s", 0.0))
        if "rng" in ck:
            if ck.get("device_type", "cpu") != device.type:
                raise ValueError(f"--resume: {last} was trained on {ck.get('device_type', 'cpu')}; resume it with "
                                 f"--device {ck.get('device_type', 'cpu')} (its noise generator lives there)")
            gen.set_state(ck["rng"]["gumbel"])
            data_gen.set_state(ck["rng"]["data"])
        norm = ck.get("normalisation", norm)
        resumed = (stage, epoch)
        if "command" in cfg.extra:
            prev = list(ck.get("commands") or ([ck["command"]] if ck.get("command") else []))
            cfg.extra["commands"] = prev + [cfg.extra["command"]]
        log(f"resumed from {last}: stage {stage}, epoch {epoch} done, step {step}")

    model.to(device)
    mean, std = mean.to(device), std.to(device)
    train_u8 = train_u8.to(device)
    if device.type != "cpu":
        opt = _optimizer_to(opt, model, make_opt)
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        for t in list(model.parameters()):
            dist.broadcast(t.data, 0)
        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    budget_s = cfg.budget_minutes * 60.0 if cfg.budget_minutes else None
    shares = cfg.stage_share
    n_train = len(train_u8)
    per_rank = preset.batch_size
    steps_full = max(1, n_train // (per_rank * world))
    steps_per_epoch = min(steps_full, preset.steps_per_epoch or steps_full)
    t_start = time.time()

    def wall() -> float:  # seconds of the whole run, earlier processes included
        return wall_before + time.time() - t_start

    def save(tag_stage, tag_epoch, done, final=False):
        if rank != 0:
            return
        extra = dict(
            normalisation=norm, dataset=cfg.data.name, stage=tag_stage, epoch=tag_epoch, step=step,
            stage_done=done, stage_elapsed=stage_elapsed, history=history, seed=cfg.seed,
            wall_s=wall(),
            optimizer=opt.state_dict(),
            rng={"gumbel": gen.get_state(), "data": data_gen.get_state()}, device_type=device.type,
            dead_restart=dead_restart, data_init=data_init,
            init_from=str(cfg.init_from) if cfg.init_from is not None else None,
        )
        extra.update(cfg.extra)
        save_checkpoint(last, model, preset, **extra)

    from contextlib import nullcontext

    progress = None
    if cfg.progress and rank == 0 and cfg.console is not None and getattr(cfg.console, "is_terminal", False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=cfg.console, transient=True)
    ctx = progress if progress is not None else nullcontext()
    # OUT/metrics.jsonl (rank 0): one line per evaluation, cut back to the resumed step
    metrics = MetricsWriter(out, resume_step=step if cfg.resume else None, history=history,
                            tensorboard=cfg.tensorboard) if rank == 0 else None
    log(f"preset {preset.name}: hidden {preset.hidden}, N={preset.N}, K={preset.K}, V={preset.V}, "
        f"batch {per_rank}x{world}, {steps_per_epoch} steps/epoch, epochs/stage {list(preset.epochs_per_stage)}"
        + (f", budget {cfg.budget_minutes:g} min (shares {list(shares)})" if budget_s else "")
        + (f", schedule {preset.schedule}" if joint else ""))

    def stage_epochs(st: int) -> int:
        return preset.total_epochs if joint else preset.epochs_per_stage[st - 1]

    with ctx:
        while stage <= preset.V:
            if stage_done:
                stage, epoch, stage_done = stage + 1, 0, False
                if stage > preset.V:
                    break
            if epoch == 0 and (resumed is None or resumed != (stage, 0)):
                # stage start (Algorithm 1)
                if cfg.init_from is not None:
                    pass  # fine-tune: the loaded codebooks stay
                elif stage == 1 or joint:
                    if data_init:
                        idx = torch.randperm(n_train, generator=data_gen)[: max(per_rank, 256)].to(device)
                        with torch.no_grad():
                            z = model.encoder(to_input(train_u8[idx], mean, std))
                        model.init_codebook_from_data(z, 0, gen)
                        if joint and preset.joint_init == "data":
                            for v in range(1, stage):
                                model.init_codebook_from_data(z, v, gen)
                    if joint and not (data_init and preset.joint_init == "data"):
                        for v in range(1, stage):
                            model.copy_codebook(v - 1, v)
                else:
                    model.copy_codebook(stage - 2, stage - 1)
                if world > 1:
                    dist.broadcast(model.codebooks.data, 0)
                    dist.broadcast(model.mu_raw.data, 0)
                log(f"[bold]stage {stage}/{preset.V}[/bold]: codebooks 1..{stage}, lambda={preset.lambdas[stage - 1]}, "
                    f"mu_min={preset.mu_min[stage - 1]}" + (" (codebook and mu copied from stage-1)" if stage > 1 and not joint and cfg.init_from is None else ""))
            resumed = None
            if preset.freeze is not None and (stage >= 2 or cfg.init_from is not None):
                model.freeze_codebook1_path()  # from here on codebook 1's path is held
            stage_budget = (budget_s if joint else budget_s * shares[stage - 1]) if budget_s else None
            budget_hit = False
            while epoch < stage_epochs(stage):
                perm = torch.randperm(n_train, generator=data_gen).to(device)
                counts = torch.zeros(stage, preset.K, dtype=torch.long, device=device)
                ep_counts = torch.zeros(stage, preset.K, dtype=torch.long, device=device)
                sums = torch.zeros(3, stage, dtype=torch.float64, device=device)
                restarted = [0] * stage
                t_ep = time.time()
                task = progress.add_task(f"stage {stage} epoch {epoch + 1}", total=steps_per_epoch) if progress else None
                n_steps = 0
                for s in range(steps_per_epoch):
                    base = (s * world + rank) * per_rank
                    bidx = perm[base: base + per_rank]
                    x = to_input(train_u8[bidx], mean, std)
                    tau = Q.tau_at(step, preset.tau0, preset.tau_decay, preset.tau_every)
                    t0 = time.time()
                    loss, st = ddp_model(x, stage, tau, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    _set_lr(opt, preset, _progress(preset, stage_elapsed, budget_s, history))
                    opt.step()
                    model.bound_mu_raw()
                    step += 1
                    n_steps += 1
                    sums[0] += st["d0"].double()
                    sums[1] += st["d1"].double()
                    sums[2] += st["R"].double()
                    for u in range(stage):
                        c = torch.bincount(st["idx"][u].flatten(), minlength=preset.K)
                        counts[u] += c
                        ep_counts[u] += c
                    if dead_restart and step % preset.dead_restart_every == 0:
                        if world > 1:
                            dist.all_reduce(counts)
                        restarted = [a + b for a, b in zip(restarted, _restart_dead(model, opt, counts, st["z"], preset, gen))]
                        if world > 1:
                            dist.broadcast(model.codebooks.data, 0)
                        counts.zero_()
                    model.restore_frozen()
                    stage_elapsed[stage - 1] += time.time() - t0
                    if progress is not None:
                        progress.update(task, advance=1, description=(
                            f"stage {stage} ep {epoch + 1} d0 {float(st['d0'][0]):.4f} d1 {float(st['d1'][0]):.4f} tau {tau:.3f}"))
                    elif cfg.log_every and step % cfg.log_every == 0:
                        log(f"  step {step} stage {stage} ep {epoch + 1} [{s + 1}/{steps_per_epoch}] "
                            f"loss {float(loss.detach()):.4f} d0 {_fmt(st['d0'])} d1 {_fmt(st['d1'])} tau {tau:.3f} "
                            f"{per_rank * world * n_steps / (time.time() - t_ep):.0f} img/s")
                    if stage_budget is not None:
                        hit = stage_elapsed[stage - 1] >= stage_budget
                        if world > 1:  # every rank must stop at the same step
                            flag = torch.tensor([1.0 if hit else 0.0], device=device)
                            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                            hit = bool(flag.item() > 0)
                        if hit:
                            budget_hit = True
                            break
                if progress is not None:
                    progress.remove_task(task)
                epoch += 1
                ev = evaluate(model, eval_imgs, mean, std, stage) if rank == 0 else None
                ips = per_rank * world * n_steps / max(time.time() - t_ep, 1e-9)
                rec = {
                    "stage": stage, "epoch": epoch, "step": step, "tau": tau, "lr": opt.param_groups[0]["lr"],
                    "d0": (sums[0] / max(n_steps, 1)).tolist(), "d1": (sums[1] / max(n_steps, 1)).tolist(),
                    "R": (sums[2] / max(n_steps, 1)).tolist(), "img_per_s": ips,
                    "train_perplexity": [Q.perplexity(c) for c in ep_counts],
                    "train_dead": [int((c == 0).sum()) for c in ep_counts],
                    "restarted": restarted, "mu": _mu_stats(model, stage),
                    "elapsed_s": wall(),
                }
                if ev is not None:
                    rec.update({"eval_psnr": ev["psnr"], "eval_perplexity": ev["perplexity"], "eval_dead": ev["dead"]})
                history.append(rec)
                if metrics is not None:
                    metrics.write(rec)
                if rank == 0:
                    log(_epoch_line(rec))
                done = budget_hit or epoch >= stage_epochs(stage)
                save(stage, epoch, done)
                if budget_hit:
                    log(f"stage {stage}: wall-clock share used ({stage_elapsed[stage - 1] / 60:.1f} min), next stage")
                    break
            stage_done = True
    if metrics is not None:
        metrics.close()
    model.to("cpu")  # finalize, export and the caller work on the CPU
    summary = {"history": history, "preset": preset.name, "dataset": cfg.data.name,
               "train_seconds": wall(), "stage_seconds": stage_elapsed}
    if rank == 0:
        summary["final"] = history[-1] if history else None
    return {"model": model, "preset": preset, "normalisation": norm, "summary": summary, "last": last}


def init_weights_from(model: ESCMVQ, path) -> dict:
    """Load a checkpoint's weights into ``model`` (same architecture; its preset may differ
    in training options and floors): encoder, decoder, codebooks, and mu clipped up to
    ``1.01 * model.preset.mu_min``. Returns the checkpoint's normalisation.

    ``model`` may have more codebooks than the checkpoint (``--codebooks``): the added ones
    start as copies of its last (codewords and mu; in a reliability-aware decoder's map the
    last codebook's channel, with "not sent" moved to the new last channel), so the fine-tune
    starts from the same function on the checkpoint's codebooks."""
    from escmvq.training.checkpoint import DEFAULT_NORMALISATION

    src, ck = load_checkpoint(path)
    ps, pm = src.preset, model.preset
    for f in ("hidden", "res_hidden", "res_blocks", "D", "B", "quantizer", "sq_channels"):
        if getattr(ps, f) != getattr(pm, f):
            raise ValueError(f"--init-from: checkpoint {f}={getattr(ps, f)!r} != preset {getattr(pm, f)!r}")
    if ps.V > pm.V:
        raise ValueError(f"--init-from: checkpoint has V={ps.V} codebooks, more than the preset's {pm.V}")
    src_of = list(range(ps.V)) + [ps.V - 1] * (pm.V - ps.V)  # the checkpoint codebook each one starts from
    if ps.N != pm.N:
        raise ValueError(f"--init-from: checkpoint N={ps.N} != {pm.N} (image size)")
    with torch.no_grad():
        model.encoder.load_state_dict(src.encoder.state_dict())
        dec_state = src.decoder.state_dict()
        if pm.V > ps.V and ps.cond_channels:  # the map's channels: codebooks as src_of, then "not sent"
            chan = torch.tensor(src_of + [ps.V])
            dec_state = {k: (t[:, chan] if k.startswith(("cond_in.", "cond_res.")) and k.endswith("weight") else t)
                         for k, t in dec_state.items()}
        missing, unexpected = model.decoder.load_state_dict(dec_state, strict=False)
        # a reliability-aware decoder may start from an unconditioned one: its conditioning
        # weights keep their zero initialisation (the fine-tune starts from the same function)
        if unexpected or any(not k.startswith(("cond_in.", "cond_res.")) for k in missing):
            raise ValueError(f"--init-from: decoder weights do not match (missing {missing}, unexpected {unexpected})")
        model.codebooks.data.copy_(src.codebooks.data[src_of])
        mu = src.mu()[src_of]
        for v in range(pm.V):
            m = float(model.mu_min[v])
            model.mu_raw.data[v] = Q.raw_from_mu(mu[v].clamp_min(1.01 * m), m)
        model.bound_mu_raw()
    model.train()
    return ck.get("normalisation") or DEFAULT_NORMALISATION


def _optimizer_to(opt, model, make_opt):
    """The optimizer of ``model`` after ``model.to(device)``: a fresh one whose state (a
    resumed run's Adam moments) is loaded from the old one, which casts it to the device."""
    state = opt.state_dict()
    new = make_opt(model)
    new.load_state_dict(state)
    return new


def _progress(preset: Preset, stage_elapsed, budget_s, history) -> float:
    """Training progress in [0, 1]: spent budget, or completed epochs, over the total."""
    if budget_s:
        return min(1.0, sum(stage_elapsed) / budget_s)
    return min(1.0, len(history) / max(preset.total_epochs, 1))


def _set_lr(opt, preset: Preset, progress: float) -> None:
    """Linear decay of the network/codebook rate from ``lr_decay_from`` to the end (to
    ``lr_final_frac * lr``); the mu rate stays constant."""
    f = 1.0
    if preset.lr_decay_from < 1.0 and progress > preset.lr_decay_from:
        t = (progress - preset.lr_decay_from) / (1.0 - preset.lr_decay_from)
        f = 1.0 + t * (preset.lr_final_frac - 1.0)
    opt.param_groups[0]["lr"] = preset.lr * f


def _fmt(t: torch.Tensor) -> str:
    return "/".join(f"{float(v):.4f}" for v in t)


def _epoch_line(r: dict) -> str:
    parts = [f"stage {r['stage']} epoch {r['epoch']} step {r['step']} tau {r['tau']:.3f} lr {r.get('lr', 0):.2g} "
             f"{r['img_per_s']:.0f} img/s "
             f"({r['elapsed_s'] / 60:.1f} min)"]
    for u in range(len(r["d0"])):
        m = r["mu"][u]
        s = (f"  cb{u + 1}: d0 {r['d0'][u]:.4f} d1 {r['d1'][u]:.4f} R {r['R'][u]:.4f}")
        if "eval_psnr" in r:
            s += f" psnr {r['eval_psnr'][u]:.2f} dB ppl {r['eval_perplexity'][u]:.0f} dead(eval) {r['eval_dead'][u]}"
        s += (f" dead(train) {r['train_dead'][u]} restarted {r['restarted'][u]}"
              f" mu mean {m['mean']:.4f} med {m['median']:.4f} [{m['min']:.4f}, {m['max']:.4f}]")
        parts.append(s)
    return "\n".join(parts)


@torch.no_grad()
def _restart_dead(model: ESCMVQ, opt, counts: torch.Tensor, z: torch.Tensor, preset: Preset, gen) -> list[int]:
    """Reset rarely used codewords (fewer than ``max(dead_min_count, dead_min_frac * window / K)``
    uses in the window) to random sub-vectors of the current batch; zero their Adam moments."""
    zs = Q.to_subvectors(z).reshape(-1, preset.D)
    n = []
    state = opt.state.get(model.codebooks, {})
    for u in range(counts.shape[0]):
        thr = max(float(preset.dead_min_count), preset.dead_min_frac * float(counts[u].sum()) / preset.K)
        dead = torch.nonzero(counts[u].double() < thr).flatten()
        n.append(int(dead.numel()))
        if dead.numel() == 0:
            continue
        sel = torch.randint(0, zs.shape[0], (dead.numel(),), generator=gen, device=zs.device)
        noise = 0.01 * zs.std() * torch.randn(dead.numel(), preset.D, generator=gen, device=zs.device)
        model.codebooks.data[u, dead] = zs[sel] + noise
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][u, dead] = 0.0
    return n


def synthetic_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images ``[n, size, size, 3]`` (for tests; no dataset needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.float64)
    for i in range(n):
        f = rng.uniform(0.5, 3.0, (3, 2))
        ph = rng.uniform(0, 2 * np.pi, (3,))
        for c in range(3):
            out[i, :, :, c] = 0.5 + 0.4 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + ph[c])
    out += rng.normal(0, 0.03, out.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def build_tiny_checkpoint(path, images: np.ndarray | None = None, seed: int = 0, preset: str | Preset = "tiny") -> Path:
    """Train the ``tiny`` preset (or the given :class:`Preset`, e.g. a baseline of it) for a
    few steps on ``images`` (default: 48 synthetic 32x32 images) and write a complete
    checkpoint (trained mu, distortion table (31)) to ``path``.
    Takes a few seconds; meant for tests of the exporter and runtime."""
    from escmvq.training.presets import get_preset

    path = Path(path)
    if images is None:
        images = synthetic_images(48, 32, seed)
    n_test = max(1, len(images) // 6)
    data = ImageSet("synthetic", images[n_test:], images[:n_test])
    pre = get_preset(preset) if isinstance(preset, str) else preset
    res = train(TrainConfig(preset=pre, data=data, out=path.parent / (path.name + ".run"),
                            seed=seed, progress=False, console=None))
    model, pre, norm = res["model"], res["preset"], res["normalisation"]
    model.eval()
    mean = torch.tensor(norm["mean"], dtype=torch.float32)
    std = torch.tensor(norm["std"], dtype=torch.float32)
    table = compute_distortion(model, data.train, mean, std)
    out = save_checkpoint(path, model, pre, normalisation=norm, distortion=table, dataset=data.name,
                          stage=pre.V, epoch=pre.epochs_per_stage[-1], history=res["summary"]["history"], seed=seed)
    import shutil

    shutil.rmtree(path.parent / (path.name + ".run"), ignore_errors=True)
    return out
