"""hubkit's recipe for ``tiny-sd-shapes``: train the VAE, then the text-conditioned UNet, on ``accelerate``.

Every step draws a fresh batch from the procedural ``shapes`` world (training pairs only, never the held-out
ones), so there is no dataset to download. The text encoder is frozen, so the embeddings of the finite set of
training captions (every template × attribute combination, plus the empty prompt used for caption dropout and
classifier-free guidance) are computed once, exactly as ``StableDiffusionPipeline.encode_prompt`` does.

The same code runs on a laptop CPU or under ``accelerate launch`` on GPUs (nothing is tied to a device).
On 2 free CPU cores the shipped recipe (``train_all`` defaults) takes about 40 minutes (VAE 7, UNet 32).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hubkit.world import base_model
from hubkit.world.shapes import (
    BACKGROUNDS,
    CAPTION_TEMPLATES,
    COLOURS,
    SHAPES,
    SIZES,
    ShapeSpec,
    render_batch,
    sample_specs,
)


def _step_seed(seed: int, step: int, process: int = 0, processes: int = 1) -> int:
    return (seed * 1_000_003 + step * processes + process) % (2**31)


def _images(specs, device) -> torch.Tensor:
    """uint8 (N, H, W, 3) renders → float (N, 3, H, W) in [-1, 1] on ``device``."""
    x = torch.from_numpy(render_batch(specs)).to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _progress(iterable, accelerator, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not accelerator.is_local_main_process, mininterval=5.0)


def train_vae(
    out_dir: str | Path,
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    config: dict | None = None,
    log_every: int = 100,
):
    """Train the ``AutoencoderKL`` (MSE + a small KL term), set ``scaling_factor`` = 1 / measured latent std,
    and save it (fp32, safetensors) to ``out_dir``. Returns the trained VAE."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL

    accelerator = Accelerator()
    set_seed(seed)
    vae = AutoencoderKL(**(config or base_model.vae_config()))
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(min(100, steps // 10 + 1), steps))
    vae, opt, sched = accelerator.prepare(vae, opt, sched)
    vae.train()
    t0 = time.time()
    for step in _progress(range(steps), accelerator, "vae"):
        specs = sample_specs(
            batch_size,
            _step_seed(seed, step, accelerator.process_index, accelerator.num_processes),
            split="train",
        )
        x = _images(specs, accelerator.device)
        post = accelerator.unwrap_model(vae).encode(x).latent_dist
        recon = accelerator.unwrap_model(vae).decode(post.sample()).sample
        rec = F.mse_loss(recon, x)
        kl = post.kl().mean() / x[0].numel()
        loss = rec + kl_weight * kl * x[0].numel()
        accelerator.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if log_every and (step + 1) % log_every == 0:
            accelerator.print(
                f"vae step {step + 1}/{steps} mse {rec.item():.5f} kl {kl.item():.4f} "
                f"({time.time() - t0:.0f}s)"
            )
    vae = accelerator.unwrap_model(vae).eval()
    std = _latent_std(vae, seed, accelerator.device)
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    accelerator.print(
        f"vae done in {time.time() - t0:.0f}s; latent std {std:.4f} -> scaling_factor "
        f"{vae.config.scaling_factor}"
    )
    if accelerator.is_main_process:
        vae.save_pretrained(Path(out_dir), safe_serialization=True)
    accelerator.wait_for_everyone()
    return vae


@torch.no_grad()
def _latent_std(vae, seed: int, device, n: int = 1024) -> float:
    zs = []
    for i in range(0, n, 256):
        x = _images(sample_specs(256, _step_seed(seed + 7919, i), split="train"), device)
        zs.append(vae.encode(x).latent_dist.sample())
    return torch.cat(zs).float().std().item()


def training_captions(include_held_out: bool = False) -> list[str]:
    """Every caption the recipe can draw (all templates × attributes) plus ``""`` first (the CFG prompt)."""
    captions = {""}
    for shape, colour, background, size in itertools.product(SHAPES, COLOURS, BACKGROUNDS, SIZES):
        spec = ShapeSpec(shape, colour, background, size)
        if spec.held_out and not include_held_out:
            continue
        captions.update(spec.caption(t) for t in range(len(CAPTION_TEMPLATES)))
    return sorted(captions)


def train_unet(
    out_dir: str | Path,
    vae,
    steps: int = 3000,
    batch_size: int = 128,
    lr: float = 5e-4,
    caption_dropout: float = 0.1,
    ema_decay: float = 0.999,
    snr_gamma: float | None = 5.0,
    seed: int = 0,
    config: dict | None = None,
    checkpoint_every: int = 0,
    log_every: int = 100,
    init_from=None,
    step_offset: int = 0,
    max_steps: int | None = None,
):
    """Train the ``UNet2DConditionModel`` (epsilon prediction, Min-SNR weighting, caption dropout to ``""``)
    on latents of the frozen ``vae``; save the EMA weights to ``out_dir`` (and the raw ones to
    ``out_dir``-raw). Returns the EMA UNet.

    ``steps`` sets the LR schedule (warmup + cosine to 10 %); ``max_steps`` stops earlier. ``init_from`` (a
    UNet or a saved folder) continues from those weights with a fresh optimizer, schedule and EMA; use
    ``step_offset`` so that the continued run draws new batches."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler, UNet2DConditionModel

    accelerator = Accelerator()
    set_seed(seed)
    device = accelerator.device
    out_dir = Path(out_dir)

    # Frozen text encoder: embed every training caption once, exactly as the pipeline does.
    tokenizer = base_model.load_tokenizer()
    text_encoder = base_model.load_text_encoder().to(device)
    captions = training_captions()
    table = base_model.encode_captions(captions, tokenizer, text_encoder)
    index = {c: i for i, c in enumerate(captions)}
    empty = index[""]
    del text_encoder

    vae = vae.to(device).eval().requires_grad_(False)
    sf = vae.config.scaling_factor
    noise_sched = DDPMScheduler(**base_model.NOISE_SCHEDULE)
    alphas_cumprod = noise_sched.alphas_cumprod.to(device)
    snr_all = alphas_cumprod / (1 - alphas_cumprod)

    if isinstance(init_from, (str, Path)):  # continue from saved weights (fresh optimizer and LR schedule)
        unet = UNet2DConditionModel.from_pretrained(init_from, torch_dtype=torch.float32)
    elif init_from is not None:
        unet = copy.deepcopy(init_from).float().train().requires_grad_(True)
    else:
        unet = UNet2DConditionModel(**dict(config or base_model.unet_config()))
    ema = copy.deepcopy(unet).requires_grad_(False).to(device) if ema_decay else None
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(min(200, steps // 10 + 1), steps))
    unet, opt, sched = accelerator.prepare(unet, opt, sched)
    unet.train()

    t0 = time.time()
    for step in _progress(range(min(steps, max_steps or steps)), accelerator, "unet"):
        s = _step_seed(seed, step + step_offset, accelerator.process_index, accelerator.num_processes)
        specs = sample_specs(batch_size, s, split="train")
        rng = random.Random(s + 1)
        ids = [
            empty
            if rng.random() < caption_dropout
            else index[spec.caption(rng.randrange(len(CAPTION_TEMPLATES)))]
            for spec in specs
        ]
        cond = table[torch.tensor(ids, device=table.device)].to(device)
        with torch.no_grad():
            latents = vae.encode(_images(specs, device)).latent_dist.sample() * sf
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch_size,), device=device)
        noisy = noise_sched.add_noise(latents, noise, t)
        pred = unet(noisy, t, cond).sample
        loss = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
        if snr_gamma:
            snr = snr_all[t]
            loss = loss * torch.clamp(snr, max=snr_gamma) / snr
        loss = loss.mean()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), accelerator.unwrap_model(unet).parameters(), strict=True):
                    pe.lerp_(p.detach(), 1 - decay)
        if log_every and (step + 1) % log_every == 0:
            accelerator.print(
                f"unet step {step + 1}/{steps} loss {loss.item():.4f} "
                f"lr {sched.get_last_lr()[0]:.2e} ({time.time() - t0:.0f}s)"
            )
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and accelerator.is_main_process:
            ckpt = out_dir.parent / "checkpoints" / f"unet-{step + 1}"
            (ema or accelerator.unwrap_model(unet)).save_pretrained(ckpt, safe_serialization=True)
    raw = accelerator.unwrap_model(unet).eval()
    final = ema.eval() if ema is not None else raw
    accelerator.print(f"unet done in {time.time() - t0:.0f}s")
    if accelerator.is_main_process:
        final.save_pretrained(out_dir, safe_serialization=True)
        if ema is not None:
            raw.save_pretrained(out_dir.with_name(out_dir.name + "-raw"), safe_serialization=True)
    accelerator.wait_for_everyone()
    return final


def save_shipped(
    src: str | Path, dst: str | Path = base_model.WEIGHTS_DIR, scheduler_kind: str = "dpm"
) -> Path:
    """Copy a trained ``src/{vae,unet}`` to ``dst`` as fp16 safetensors (+ the scheduler config)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    src, dst = Path(src), Path(dst)
    for name, cls in (("vae", AutoencoderKL), ("unet", UNet2DConditionModel)):
        model = cls.from_pretrained(src / name, torch_dtype=torch.float32)
        model.to(torch.float16).save_pretrained(dst / name, safe_serialization=True)
    base_model.scheduler(scheduler_kind).save_pretrained(dst / "scheduler")
    return dst


# The shipped weights' recipe: (LR-schedule steps, steps run, peak LR). Each phase continues from the previous
# phase's EMA weights with a fresh optimizer, schedule and EMA (the shipped run was cut short twice by CPU
# contention on a shared 2-core machine; this reproduces exactly what it did): 1000 steps of a 3000-step
# schedule at 5e-4, 300 steps of a 900-step schedule at 3e-4, then a full 250-step schedule at 1.5e-4.
SHIPPED_UNET_PHASES = ((3000, 1000, 5e-4), (900, 300, 3e-4), (250, 250, 1.5e-4))


def train_all(
    out_dir: str | Path,
    vae_steps: int = 1500,
    unet_steps: int | None = None,
    seed: int = 0,
    vae_kwargs: dict | None = None,
    unet_kwargs: dict | None = None,
    ship_to: str | Path | None = None,
):
    """The whole recipe: ``out_dir/vae`` then ``out_dir/unet`` (fp32); optionally an fp16 copy in ``ship_to``.

    By default the UNet follows :data:`SHIPPED_UNET_PHASES` (the shipped weights); ``unet_steps`` instead runs
    one phase of that many steps. About 40 minutes on 2 free CPU cores (VAE ~7 min, UNet 1550 × ~1.25 s).
    """
    out_dir = Path(out_dir)
    t0 = time.time()
    vae = train_vae(out_dir / "vae", steps=vae_steps, seed=seed, **(vae_kwargs or {}))
    t_vae = time.time() - t0
    phases = SHIPPED_UNET_PHASES if unet_steps is None else ((unet_steps, unet_steps, 5e-4),)
    unet, offset = None, 0
    for i, (schedule, run, lr) in enumerate(phases):
        last = i == len(phases) - 1
        unet = train_unet(
            out_dir / ("unet" if last else f"unet-phase{i + 1}"),
            vae,
            steps=schedule,
            max_steps=run,
            lr=lr,
            seed=seed,
            init_from=unet,
            step_offset=offset,
            **(unet_kwargs or {}),
        )
        offset += run
    t_unet = time.time() - t0 - t_vae
    base_model.scheduler().save_pretrained(out_dir / "scheduler")
    if ship_to is not None:
        save_shipped(out_dir, ship_to)
    timings = {"vae_s": round(t_vae, 1), "unet_s": round(t_unet, 1), "total_s": round(time.time() - t0, 1)}
    print(f"train_all timings: {timings}")
    return timings


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Train tiny-sd-shapes (VAE then UNet).")
    p.add_argument("out_dir")
    p.add_argument("--vae-steps", type=int, default=1500)
    p.add_argument("--unet-steps", type=int, default=None, help="one phase (default: the shipped phases)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-dir", help="skip VAE training: use this trained VAE")
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--ship-to", help="also write the fp16 copy here")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--init-unet", help="continue from these UNet weights")
    p.add_argument("--step-offset", type=int, default=0, help="data seeds start here (with --init-unet)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    if args.vae_dir:
        from diffusers import AutoencoderKL

        out = Path(args.out_dir)
        t0 = time.time()
        vae = AutoencoderKL.from_pretrained(args.vae_dir)
        train_unet(
            out / "unet",
            vae,
            steps=args.unet_steps or 3000,
            seed=args.seed,
            lr=args.lr,
            checkpoint_every=args.checkpoint_every,
            init_from=args.init_unet,
            step_offset=args.step_offset,
        )
        base_model.scheduler().save_pretrained(out / "scheduler")
        if args.ship_to:
            import shutil

            shutil.copytree(args.vae_dir, out / "vae", dirs_exist_ok=True)
            save_shipped(out, args.ship_to)
        print(f"unet timings: {time.time() - t0:.0f}s")
    else:
        train_all(
            args.out_dir,
            args.vae_steps,
            args.unet_steps,
            args.seed,
            unet_kwargs={"checkpoint_every": args.checkpoint_every},
            ship_to=args.ship_to,
        )


if __name__ == "__main__":
    main()
