"""Learning-rate probe for the `cpu` network (docs/training.md): train codebook 1
for a few hundred steps as a plain VQ-VAE (`--mode plain`: nearest codeword, straight
through, no BSC) or as ESC stage 1 (`--mode esc`: BSC Gumbel sample, mu learning) and print
the clean PSNR on 1,000 CIFAR-10 test images every 300 steps (one line per point; `--json`
appends the points to a JSON file).

    python benchmarks/probe_lr.py --mode plain --lr 2e-3 --steps 900 --threads 1
"""
import argparse
import json
import time
from pathlib import Path

import torch

from escmvq.training import quantizer as Q
from escmvq.training.data import load_dataset
from escmvq.training.model import ESCMVQ
from escmvq.training.presets import get_preset
from escmvq.training.trainer import evaluate, to_input

ap = argparse.ArgumentParser()
ap.add_argument("--mode", default="plain"); ap.add_argument("--steps", type=int, default=1200)
ap.add_argument("--res", type=int, default=64); ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--hidden", type=int, default=128); ap.add_argument("--bs", type=int, default=64)
ap.add_argument("--restart", type=int, default=0); ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--json", default=None); ap.add_argument("--data-dir", default=None, help="default: $ESCMVQ_DATA/cifar10")
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
data = load_dataset("cifar10", a.data_dir)
norm = data.normalisation(); mean = torch.tensor(norm["mean"]); std = torch.tensor(norm["std"])
p = get_preset("cpu").replace(res_hidden=a.res, hidden=a.hidden, batch_size=a.bs)
m = ESCMVQ(p); g = torch.Generator().manual_seed(0)
tr = torch.from_numpy(data.train); ev = data.test[:1000]
with torch.no_grad():
    m.init_codebook_from_data(m.encoder(to_input(tr[torch.randperm(len(tr), generator=g)[:256]], mean, std)), 0, g)
opt = torch.optim.Adam([{"params": list(m.encoder.parameters()) + list(m.decoder.parameters()) + [m.codebooks], "lr": a.lr},
                        {"params": [m.mu_raw], "lr": 1e-2}])
t0 = time.time(); perm = torch.randperm(len(tr), generator=g); pos = 0
counts = torch.zeros(p.K)
for s in range(1, a.steps + 1):
    if pos + a.bs > len(tr): perm = torch.randperm(len(tr), generator=g); pos = 0
    x = to_input(tr[perm[pos:pos + a.bs]], mean, std); pos += a.bs
    if a.mode == "plain":
        z = m.encoder(x); zs = Q.to_subvectors(z); cb = m.codebooks[0]
        with torch.no_grad(): idx = Q.nearest(zs, cb)
        zq = cb[idx]
        d1 = ((zq - zs.detach())**2).mean() + 0.25 * ((zs - zq.detach())**2).mean()
        xh = m.decoder(Q.from_subvectors(zs + (zq - zs).detach(), *z.shape[-2:]))
        loss = ((xh - x)**2).mean() + d1
    else:
        tau = Q.tau_at(s, 0.5, 0.003, 100)
        loss, st = m(x, 1, tau, g); idx = st["idx"][0]
    opt.zero_grad(); loss.backward(); opt.step()
    counts += torch.bincount(idx.flatten(), minlength=p.K)
    if a.restart and s % a.restart == 0:
        from escmvq.training.trainer import _restart_dead
        _restart_dead(m, opt, counts[None].long(), (m.encoder(x)).detach(), p, g); counts.zero_()
    if s % 300 == 0:
        e = evaluate(m, ev, mean, std, 1)
        row = {"mode": a.mode, "res_hidden": a.res, "lr": a.lr, "step": s, "seconds": round(time.time() - t0, 1),
               "psnr": round(e["psnr"][0], 2), "perplexity": round(e["perplexity"][0]), "dead": e["dead"][0]}
        print(row, flush=True)
        if a.json:
            path = Path(a.json)
            rows = json.loads(path.read_text()) if path.exists() else []
            path.write_text(json.dumps(rows + [row], indent=1))
