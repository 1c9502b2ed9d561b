"""``escmvq train``: Algorithm 1 on a dataset (DDP under torchrun), checkpoints every epoch.

torch is imported inside the command functions only.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer


def _fail(console, msg: str) -> None:
    console.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def train_cmd(
    preset: str = typer.Option("cpu", help="training preset: paper, cpu or tiny"),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, stl10, folder or npz"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder holding the dataset files"),
    out: Path = typer.Option(..., "--out", help="run folder (checkpoints, log)"),
    seed: int = typer.Option(0, help="seed of every random generator"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/last.ckpt"),
    budget_minutes: Optional[float] = typer.Option(
        None, "--budget-minutes", help="wall-clock training budget, split over the stages (docs/training.md)"),
    stage_share: Optional[str] = typer.Option(
        None, "--stage-share", help="budget share per stage, e.g. '0.7,0.075,0.075,0.075,0.075' (the default, trainer.py)"),
    threads: int = typer.Option(2, help="torch CPU threads per process"),
    device: str = typer.Option(
        "cpu", "--device", help="cpu, cuda, cuda:N or auto (cuda when available); under torchrun, cuda = "
        "cuda:LOCAL_RANK with the nccl backend. The batches and permutations are the CPU run's; the noise "
        "draws differ, so a cuda run is not bit-identical to a cpu one"),
    limit: Optional[int] = typer.Option(None, help="use only the first LIMIT images of each split"),
    tile: int = typer.Option(32, help="tile size for --dataset folder"),
    distortion_images: Optional[int] = typer.Option(
        None, "--distortion-images", help="training images for the distortion table (default: all)"),
    no_dead_restart: bool = typer.Option(False, "--no-dead-restart", help="disable dead-codeword restarts"),
    no_data_init: bool = typer.Option(False, "--no-data-init", help="random (not data) initial codebook"),
    log_every: int = typer.Option(50, help="steps between log lines when not on a terminal"),
    epochs: Optional[str] = typer.Option(None, help="override epochs per stage, e.g. '10,3,3,3,3'"),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", help="override the preset's cap"),
    mu_raw_min: Optional[float] = typer.Option(
        None, "--mu-raw-min", help="keep raw >= this in mu = mu_min + (0.5 - mu_min) * sigmoid(raw), so a mu "
        "at its floor can still rise (e.g. -6; default: the preset's, unbounded)"),
    commit_clean: bool = typer.Option(
        False, "--commit-clean", help="commitment to the clean nearest codeword, not the channel-corrupted sample"),
    encoder_grad_codebooks: Optional[int] = typer.Option(
        None, "--encoder-grad-codebooks", help="only codebooks 1..K send gradient (d0, commitment) into the encoder"),
    schedule: Optional[str] = typer.Option(
        None, "--schedule", help="sequential (Algorithm 1), joint (all V decoded every step from the start) or "
        "joint-draw (one codebook drawn per sample); joint runs the sum of --epochs as one stage"),
    joint_init: Optional[str] = typer.Option(
        None, "--joint-init", help="joint schedules: codebooks 2..V copied from 1 ('copy') or data-initialised ('data')"),
    noise: Optional[str] = typer.Option(
        None, "--noise", help="bsc (i.i.d. flips at mu) or gray (per-position Gray 16-QAM BER, erasures by --erase-prob)"),
    erase_prob: Optional[str] = typer.Option(
        None, "--erase-prob", help="--noise gray: probability per codebook that a sub-vector is erased, e.g. '0,0,0,0,0.3'"),
    erase_dist: Optional[str] = typer.Option(
        None, "--erase-dist", help="--erase-prob: 'fixed' (every sub-vector with the probability) or 'uniform' (each "
        "image draws its rate uniformly from [0, 2 p]: the spread of erasure rates deep and good fades deliver)"),
    mu_min: Optional[str] = typer.Option(
        None, "--mu-min", help="floors of mu per codebook, e.g. '0.0005,0.002,0.01,0.05,0.2'"),
    codebooks: Optional[int] = typer.Option(
        None, "--codebooks", min=1, help="number of codebooks V (default: the preset's); the stage weights lambda "
        "double per added codebook, and --mu-min, --epochs (and --erase-prob) need V entries. With --init-from a "
        "checkpoint of fewer codebooks, the added ones start as copies of its last (codewords, mu, decoder map channel)"),
    decoder_cond: Optional[str] = typer.Option(
        None, "--decoder-cond", help="'codebook': reliability-aware decoder fed the map of the codebook each sub-vector "
        "came on (V = not sent), as the receiver knows it from the plan"),
    cond_mix: Optional[float] = typer.Option(
        None, "--cond-mix", help="--decoder-cond: probability that a sub-vector of a decoder pass comes from a random "
        "codebook of the stage (mixed maps, as the allocator makes)"),
    decoder_input: Optional[str] = typer.Option(
        None, "--decoder-input", help="sample (the Gumbel sample (25), the paper's) or posterior (the posterior-mean "
        "codeword of a bit-flipped label under the running label usage: what the soft receiver hands the decoder)"),
    freeze: Optional[str] = typer.Option(
        None, "--freeze", help="hold codebook 1's path from stage 2 (or a fine-tune's start) on: 'encoder' (the encoder "
        "and codebook 1) or 'codebook1' (also the decoder but its conditioning layers' other channels; needs "
        "--decoder-cond), so the noisier codebooks cannot lower codebook 1's clean quality"),
    eta: Optional[float] = typer.Option(None, "--eta", help="weight ratio eta of (27): codebook u's loss weighs eta^u "
                                        "(default: the preset's; smaller favours codebook 1)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="network/codebook learning rate (default: the preset's)"),
    tau0: Optional[float] = typer.Option(None, "--tau0", help="initial Gumbel-Softmax temperature (default: the preset's)"),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="fine-tune: start from this checkpoint's weights (mu clipped to the floors), with a "
        "fresh optimizer and schedule; codebooks are not re-initialised or copied"),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="train one pair of a Sec. V baseline instead, METHOD:LEVEL, e.g. 'bsc-vq:0.02', "
        "'esc-svq:3', 'bsc-sq:0.1', 'blindsc:5' (escmvq.training.baselines)"),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="also write the metrics (OUT/metrics.jsonl, one line per epoch) to TensorBoard "
        "in OUT/tensorboard (needs: pip install tensorboard)"),
) -> None:
    """Train ESC-MVQ (Algorithm 1) and write OUT/last.ckpt (every epoch) and OUT/final.ckpt.

    Python: ``res = escmvq.training.trainer.train(TrainConfig(preset, data, out))`` then
    ``escmvq.training.finalize.finalize(res, data.train)`` (final.ckpt, with table (31)).
    """
    from rich.console import Console

    console = Console()
    import torch

    from escmvq.training import ddp

    rank, world = ddp.world_from_env()

    from escmvq.training.data import DatasetMissing, load_dataset

    p, epochs_override = _preset(console, preset, baseline, epochs=epochs or None, steps_per_epoch=steps_per_epoch or None,
                                 mu_raw_min=mu_raw_min, commit_clean=commit_clean or None,
                                 encoder_grad_codebooks=encoder_grad_codebooks, schedule=schedule,
                                 joint_init=joint_init, noise=noise, lr=lr, tau0=tau0, decoder_cond=decoder_cond,
                                 cond_mix=cond_mix, erase_prob=erase_prob, erase_dist=erase_dist, mu_min=mu_min,
                                 decoder_input=decoder_input, freeze=freeze, eta=eta, codebooks=codebooks)
    shares = _stage_share(console, p.V, stage_share)
    from escmvq.training.trainer import resolve_device

    try:
        dev = resolve_device(device)
    except ValueError as e:
        _fail(console, str(e))
    try:
        data = load_dataset(dataset, data_dir, limit=limit, tile=tile)
    except (DatasetMissing, ValueError) as e:
        _fail(console, str(e))
    if resume and not (out / "last.ckpt").is_file():
        _fail(console, f"--resume: no checkpoint at {out / 'last.ckpt'}")
    if init_from is not None and not init_from.is_file():
        _fail(console, f"--init-from: no checkpoint at {init_from}")
    if tensorboard:
        from escmvq.training.metrics import tensorboard_missing

        if (msg := tensorboard_missing()) is not None:
            _fail(console, msg)
    torch.set_num_threads(threads)
    ddp.setup("nccl" if dev.type == "cuda" else "gloo")
    from escmvq.training.finalize import finalize
    from escmvq.training.trainer import TrainConfig, train

    cmdline = "escmvq train " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else ""
    cfg = TrainConfig(
        preset=p, data=data, out=out, seed=seed, resume=resume, budget_minutes=budget_minutes, stage_share=shares,
        threads=threads, log_every=log_every, distortion_images=distortion_images,
        dead_restart=False if no_dead_restart else None, data_init=False if no_data_init else None,
        epochs_override=epochs_override, init_from=init_from, tensorboard=tensorboard, device=device,
        console=console if rank == 0 else None, extra={"command": cmdline, "world_size": world, "budget_minutes": budget_minutes,
                                                         "stage_share": list(shares)},
    )
    res = train(cfg)
    t_trained = time.time()
    ddp.teardown()
    if rank != 0:
        return
    final = finalize(res, data.train, distortion_images, trained_at=t_trained,
                     log=lambda m: console.print(m, highlight=False))
    _print_summary(console, res, final, data.name)


def _preset(console, name: str, baseline: str | None, **opts) -> tuple:
    """The preset ``name`` (or its ``--baseline`` pair) with the command line's overrides ``opts``
    (preset field -> value, None = not given; ``epochs``, ``erase_prob`` and ``mu_min`` as the
    comma-separated text) -> ``(preset, epochs per stage or None)``; a bad value is a one-line error."""
    from escmvq.training.presets import get_preset

    listed = {"epochs": "epochs_per_stage", "erase_prob": "erase_prob", "mu_min": "mu_min"}
    kw = {}
    try:
        p = get_preset(name)
        if baseline:
            from escmvq.training.baselines import preset_from_spec

            p = preset_from_spec(p, baseline)
        V = opts.pop("codebooks", None)
        if V is not None and V != p.V:
            kw.update(V=V, lambdas=p.lambdas_for(V))
        for key, val in opts.items():
            if val is None:
                continue
            if key not in listed:
                kw[key] = val
                continue
            conv = int if key == "epochs" else float
            try:
                kw[listed[key]] = tuple(conv(v) for v in val.split(","))
            except ValueError:
                raise ValueError(f"--{key.replace('_', '-')}: expected comma-separated numbers, got {val!r}") from None
        if kw:
            p = p.replace(**kw)
    except ValueError as e:
        _fail(console, str(e))
    return p, kw.get("epochs_per_stage")


def _stage_share(console, V: int, text) -> tuple[float, ...]:
    """``--stage-share`` (None: the trainer's default for five codebooks, else equal shares)."""
    from escmvq.training.trainer import DEFAULT_STAGE_SHARE

    shares = DEFAULT_STAGE_SHARE if V == len(DEFAULT_STAGE_SHARE) else (1.0 / V,) * V
    if text:
        try:
            shares = tuple(float(v) for v in text.split(","))
        except ValueError:
            _fail(console, f"--stage-share: expected comma-separated numbers, got {text!r}")
        if len(shares) != V or any(v <= 0 for v in shares):
            _fail(console, f"--stage-share: expected {V} positive numbers, got {text!r}")
    return shares


def _print_summary(console, res: dict, final: Path, data_name: str) -> None:
    """The last epoch per codebook (eval PSNR, perplexity, dead codewords, mu, table (31)) and the checkpoint."""
    import numpy as np
    import torch
    from rich.table import Table

    ck = torch.load(final, map_location="cpu", weights_only=True)
    table, pre, hist = np.asarray(ck["distortion"]), res["preset"], res["summary"]["history"]
    tab = Table(title=f"ESC-MVQ {pre.name} on {data_name}: {len(hist)} epochs, {ck['train_wall_s'] / 60:.1f} min")
    for c in ("codebook", "PSNR clean (eval)", "perplexity", "dead", "mu mean", "mu median", "mu min", "mu max", "D (31) mean"):
        tab.add_column(c, justify="right")
    last = hist[-1] if hist else None
    if last is not None:
        for v in range(len(last["mu"])):
            m = last["mu"][v]
            tab.add_row(str(v + 1), f"{last['eval_psnr'][v]:.2f}", f"{last['eval_perplexity'][v]:.0f}",
                        str(last["eval_dead"][v]), f"{m['mean']:.4f}", f"{m['median']:.4f}", f"{m['min']:.4f}",
                        f"{m['max']:.4f}", f"{table[v].mean():.4f}")
    console.print(tab)
    console.print(f"checkpoint: {final}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    register_report(app)


def report_cmd(
    checkpoint: Path = typer.Argument(..., help="checkpoint (final.ckpt or a shipped one)"),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, stl10, folder or npz"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder holding the dataset files"),
    out: Path = typer.Option(..., "--out", help="output prefix: writes OUT.report.json, OUT.report.md, OUT.mu-cdf.png"),
    draws: int = typer.Option(5, help="bit-error draws from each codebook's own mu"),
    seed: int = typer.Option(0, help="seed of the bit-error draws"),
    limit: Optional[int] = typer.Option(None, help="use only the first LIMIT test images"),
    threads: int = typer.Option(2, help="torch CPU threads"),
    ship: Optional[Path] = typer.Option(None, "--ship", help="also write a copy without optimizer/RNG state here"),
) -> None:
    """Per-codebook PSNR on the test split (no bit errors / bit errors from its own mu), usage, mu stats, Fig. 3 PNG.

    Python: ``escmvq.training.report.write_report(evaluate_checkpoint(CHECKPOINT, images), out)``.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console()
    import torch

    from escmvq.training.checkpoint import CheckpointError, load_checkpoint, strip_checkpoint
    from escmvq.training.data import DatasetMissing, load_dataset
    from escmvq.training.report import evaluate_checkpoint, plot_mu_cdf, write_report

    if draws < 1:
        _fail(console, "--draws must be at least 1")
    torch.set_num_threads(threads)
    try:
        mc = load_checkpoint(checkpoint)
    except CheckpointError as e:
        _fail(console, str(e))
    try:
        data = load_dataset(dataset, data_dir, limit=limit)
    except (DatasetMissing, ValueError) as e:
        _fail(console, str(e))
    rep = evaluate_checkpoint(checkpoint, data.test, draws=draws, seed=seed, model_ckpt=mc)
    js, md = write_report(rep, out)
    png = plot_mu_cdf(mc[1]["mu"], out.with_name(out.name + ".mu-cdf.png"),
                      title=f"CDF of trained mu ({rep['preset']}, {rep['dataset']})", mu_min=mc[0].preset.mu_min)
    tab = Table(title=f"{checkpoint.name}: {rep['test_images']} test images, {draws} draws")
    for c in ("v", "mu mean", "mu median", "PSNR clean", "PSNR own mu", "dead", "perplexity"):
        tab.add_column(c, justify="right")
    for r in rep["codebooks"]:
        tab.add_row(str(r["codebook"]), f"{r['mu_mean']:.4f}", f"{r['mu_median']:.4f}", f"{r['psnr_clean']:.2f}",
                    f"{r['psnr_own_mu']:.2f}±{r['psnr_own_mu_std']:.2f}", f"{r['dead_codewords']}", f"{r['perplexity']:.0f}")
    console.print(tab)
    console.print(f"PSNR falls as mu rises: {rep['psnr_falls_as_mu_rises']}; wrote {js}, {md}, {png}", highlight=False)
    if ship is not None:
        console.print(f"shipped checkpoint: {strip_checkpoint(checkpoint, ship)}", highlight=False)


def mu_plot_cmd(
    checkpoint: Path = typer.Argument(..., help="checkpoint"),
    out: Path = typer.Option(..., "--out", help="PNG to write"),
) -> None:
    """Fig. 3: CDF of the trained bit-flip probabilities of every codebook, as a PNG.

    Python: ``escmvq.training.report.plot_mu_cdf(load_checkpoint(CHECKPOINT)[1]["mu"], out)``.
    """
    from rich.console import Console

    console = Console()
    from escmvq.training.checkpoint import CheckpointError, load_checkpoint
    from escmvq.training.report import plot_mu_cdf

    try:
        model, ck = load_checkpoint(checkpoint)
    except CheckpointError as e:
        _fail(console, str(e))
    console.print(f"wrote {plot_mu_cdf(ck['mu'], out, mu_min=model.preset.mu_min)}", highlight=False)


def register_report(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("mu-plot")(mu_plot_cmd)
