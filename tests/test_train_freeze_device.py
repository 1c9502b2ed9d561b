"""Holding codebook 1's path (``--freeze``), the loss weight ratio (``--eta``) and the training
device (``--device``) on the ``tiny`` preset."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from escmvq.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from escmvq.training.data import ImageSet  # noqa: E402
from escmvq.training.presets import get_preset  # noqa: E402
from escmvq.training.trainer import (TrainConfig, build_tiny_checkpoint, resolve_device,  # noqa: E402
                                     synthetic_images, train)
from train_helpers import train_cli  # noqa: E402

COND = {"decoder_cond": "codebook"}


def _data(n=40):
    imgs = synthetic_images(n, 32, 1)
    return ImageSet("synthetic", imgs[8:], imgs[:8])


def _cond_ckpt(tmp_path):
    return build_tiny_checkpoint(tmp_path / "src.ckpt", preset=get_preset("tiny").replace(**COND))


def _fine_tune(tmp_path, ck, **kw):
    p = get_preset("tiny").replace(**COND, epochs_per_stage=(0, 0, 0, 0, 1), steps_per_epoch=4, lr=1e-2, **kw)
    return train(TrainConfig(preset=p, data=_data(), out=tmp_path / f"ft-{kw.get('freeze')}", progress=False,
                             init_from=ck))["model"]


def _cb1_output(m, x):
    with torch.no_grad():
        z = m.encoder(x)
        return m.decode(m.lookup(m.quantize_indices(z, 0), 0, z.shape[-2:]), 0)


def _same(a, b):
    return all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("freeze", [None, "encoder", "codebook1"])
def test_freeze_holds_codebook_1s_path_and_trains_the_rest(tmp_path, freeze):
    ck = _cond_ckpt(tmp_path)
    src, _ = load_checkpoint(ck)
    m = _fine_tune(tmp_path, ck, freeze=freeze)
    x = torch.from_numpy(_data().test).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    cb = m.codebooks.detach()
    assert not torch.equal(cb[4], src.codebooks[4])  # the noisy codebooks always train
    if freeze is None:  # control: without the option codebook 1's path moves
        assert not _same(m.encoder, src.encoder) and not torch.equal(cb[0], src.codebooks[0])
        return
    assert _same(m.encoder, src.encoder) and torch.equal(cb[0], src.codebooks[0])
    dec_same = torch.equal(m.decoder.conv_in.weight, src.decoder.conv_in.weight)
    cond5_same = torch.equal(m.decoder.cond_in.weight[:, 4], src.decoder.cond_in.weight[:, 4])
    if freeze == "encoder":
        assert not dec_same  # the decoder still trains
        return
    assert dec_same and not cond5_same  # backbone held, codebook 5's conditioning channel trains
    assert torch.equal(m.decoder.cond_in.weight[:, 0], src.decoder.cond_in.weight[:, 0])
    assert all(torch.equal(a.bias, b.bias) for a, b in zip(m.decoder.cond_res, src.decoder.cond_res))
    assert torch.equal(_cb1_output(m, x), _cb1_output(src, x))  # codebook 1 decodes exactly as before


def test_freeze_from_scratch_starts_at_stage_2(tmp_path):
    """Sequential training from scratch: codebook 1's path trains in stage 1 and is held from
    stage 2 on, so after five stages it is the one a stage-1-only run (same seed) ends with."""
    p = get_preset("tiny").replace(**COND, freeze="codebook1")
    one = train(TrainConfig(preset=p.replace(epochs_per_stage=(1, 0, 0, 0, 0)), data=_data(), out=tmp_path / "a",
                            progress=False))["model"]
    full = train(TrainConfig(preset=p, data=_data(), out=tmp_path / "b", progress=False))["model"]
    fresh = get_preset("tiny").replace(**COND)
    init = train(TrainConfig(preset=fresh.replace(epochs_per_stage=(0, 0, 0, 0, 0)), data=_data(),
                             out=tmp_path / "c", progress=False))["model"]
    assert not _same(one.encoder, init.encoder)  # stage 1 trained it
    assert _same(full.encoder, one.encoder) and torch.equal(full.codebooks[0], one.codebooks[0])
    assert _same(full.decoder.res, one.decoder.res)
    assert not torch.equal(full.codebooks[4], one.codebooks[4])


def test_freeze_survives_a_resume(tmp_path):
    """A resumed run holds the same values (the snapshot is retaken from the checkpoint, which
    already holds them)."""
    p = get_preset("tiny").replace(**COND, freeze="encoder")
    train(TrainConfig(preset=p.replace(epochs_per_stage=(1, 1, 0, 0, 0)), data=_data(), out=tmp_path, progress=False))
    before, _ = load_checkpoint(tmp_path / "last.ckpt")
    m = train(TrainConfig(preset=p, data=_data(), out=tmp_path, progress=False, resume=True,
                          epochs_override=(1, 1, 1, 1, 1)))["model"]
    assert _same(m.encoder, before.encoder) and torch.equal(m.codebooks[0], before.codebooks[0])
    assert not torch.equal(m.codebooks[4], before.codebooks[4])


@pytest.mark.parametrize("kw,msg", [
    ({"freeze": "decoder"}, "freeze"), ({"freeze": "codebook1"}, "decoder_cond"),
    ({"freeze": "encoder", "schedule": "joint-draw"}, "sequential"), ({"eta": 0.0}, "eta"),
])
def test_bad_freeze_and_eta_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        get_preset("tiny").replace(**kw)


def test_eta_weights_the_codebooks():
    from escmvq.training.losses import stage_weights

    w = stage_weights(3, 0.5)
    assert torch.allclose(w, torch.tensor([4.0, 2.0, 1.0]) / 7.0)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu0", "cuda:x"):
        with pytest.raises(ValueError, match="not a device name|not available"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        assert resolve_device("cuda") == torch.device("cuda:0")  # not under torchrun
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def _npz_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "train.npz", images=synthetic_images(24, 32, 1))
    np.savez(d / "test.npz", images=synthetic_images(8, 32, 2))
    return d


def test_cli_device_freeze_and_eta(tmp_path):
    d = _npz_dir(tmp_path)
    base = ["train", "--preset", "tiny", "--dataset", "npz", "--data-dir", d, "--threads", "1"]
    r = train_cli(*base, "--out", tmp_path / "run", "--decoder-cond", "codebook", "--freeze", "codebook1",
                  "--eta", "0.5", "--device", "cpu")
    assert r.returncode == 0, r.stdout + r.stderr
    m, c = load_checkpoint(tmp_path / "run" / "final.ckpt")
    assert (m.preset.freeze, m.preset.eta, c["device_type"]) == ("codebook1", 0.5, "cpu")
    r = train_cli(*base, "--out", tmp_path / "bad", "--device", "tpu")
    assert r.returncode == 2 and "--device tpu: not a device name" in r.stdout and not (tmp_path / "bad").exists()
    r = train_cli(*base, "--out", tmp_path / "bad", "--freeze", "codebook1")
    assert r.returncode == 2 and "decoder_cond" in r.stdout and not (tmp_path / "bad").exists()
    if not torch.cuda.is_available():
        r = train_cli(*base, "--out", tmp_path / "bad", "--device", "cuda")
        assert r.returncode == 2 and "CUDA is not available" in r.stdout and not (tmp_path / "bad").exists()


def test_resume_on_another_device_refused(tmp_path):
    p = get_preset("tiny")
    train(TrainConfig(preset=p.replace(epochs_per_stage=(1, 0, 0, 0, 0)), data=_data(), out=tmp_path, progress=False))
    m, ck = load_checkpoint(tmp_path / "last.ckpt")
    ck.pop("format"), ck.pop("version")
    for k in ("preset", "model_state", "image_size", "latent_shape", "codebooks", "mu"):
        ck.pop(k)
    ck["device_type"] = "cuda"  # as a run on a GPU writes it
    save_checkpoint(tmp_path / "last.ckpt", m, m.preset, **ck)
    with pytest.raises(ValueError, match="trained on cuda; resume it with --device cuda"):
        train(TrainConfig(preset=p, data=_data(), out=tmp_path, progress=False, resume=True))


def test_seed_fixes_the_initial_weights(tmp_path):
    """``--seed`` seeds the networks' initialisation too (a run is reproducible), without
    touching the caller's global RNG."""
    p = get_preset("tiny").replace(epochs_per_stage=(0, 0, 0, 0, 0))
    state = torch.random.get_rng_state()
    a = train(TrainConfig(preset=p, data=_data(), out=tmp_path / "a", progress=False, seed=3))["model"]
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train(TrainConfig(preset=p, data=_data(), out=tmp_path / "b", progress=False, seed=3))["model"]
    c = train(TrainConfig(preset=p, data=_data(), out=tmp_path / "c", progress=False, seed=4))["model"]
    assert _same(a.encoder, b.encoder) and _same(a.decoder, b.decoder)
    assert not _same(a.encoder, c.encoder)
