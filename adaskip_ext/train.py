"""``python -m adaskip_ext.train``: train an adaptive U-Net with one of the paper's schemes.

Writes ``OUT/last.safetensors`` (EMA weights when EMA is on), ``OUT/resume.pt`` (everything an
exact resume needs, loadable with ``torch.load(weights_only=True)``) and ``OUT/log.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import cli, distributed
from .checkpoints import build_metadata, load_model, save_model
from .data import load_dataset
from .diffusion import DiffusionConfig, epsilon_loss, q_sample
from .io_utils import UserFacingError, atomic_path, check_writable
from .model import PRESETS, SKIP_TYPES, AdaptiveUNet
from .sampler import seed_for
from .training import EMA, SCHEMES, BatchDrawer

# Flags that change the training trajectory: a resumed run must use the values it started with.
TRAJECTORY_FLAGS = ("preset", "data", "scheme", "skip_type", "c", "batch_size", "lr", "warmup",
                    "grad_clip", "ema_decay", "init", "seed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adaskip_ext.train",
        description="Train a skip-aware DDPM U-Net (k = number of deepest levels skipped).",
        formatter_class=cli.HelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits", help="model size")
    parser.add_argument("--data", default="digits",
                        help="'digits' (embedded), 'folder:PATH' or 'cifar10:PATH' (python batches)")
    parser.add_argument("--scheme", choices=SCHEMES, default="constant-k",
                        help="full: k=0; random: k uniform per batch; constant-k: one k(t) per batch")
    parser.add_argument("--skip-type", choices=SKIP_TYPES, default="zero",
                        help="what feeds the first active up block when levels are skipped")
    parser.add_argument("--c", type=float, default=2.0,
                        help="exponent of the skip schedule k(t) (constant-k training; stored as the sampling default)")
    parser.add_argument("--steps", type=int, default=10000, help="total optimiser steps")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate after warm-up")
    parser.add_argument("--warmup", type=int, default=1000, help="linear LR warm-up steps")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip (0 disables)")
    parser.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay (0 disables EMA)")
    parser.add_argument("--init", default=None,
                        help="start from this checkpoint's weights: adaskip, diffusers folder or DDIM "
                             ".ckpt (default: fresh weights of --preset)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from OUT/resume.pt")
    parser.add_argument("--save-every", type=int, default=1000, help="checkpoint interval in steps")
    parser.add_argument("--log-every", type=int, default=50, help="loss-log interval in steps")
    parser.add_argument("--out", default="runs/train", help="output directory")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … or auto (CUDA if present)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    return parser


def check_args(args: argparse.Namespace) -> None:
    positive = {"--steps": args.steps, "--batch-size": args.batch_size,
                "--save-every": args.save_every, "--log-every": args.log_every}
    for flag, value in positive.items():
        if value < 1:
            raise UserFacingError(f"{flag} must be positive, got {value}")
    for flag, value in {"--lr": args.lr, "--warmup": args.warmup, "--grad-clip": args.grad_clip,
                        "--c": args.c}.items():
        if not (math.isfinite(value) and value >= 0):
            raise UserFacingError(f"{flag} must be a finite number >= 0, got {value}")
    if not 0.0 <= args.ema_decay < 1.0:
        raise UserFacingError(f"--ema-decay must lie in [0, 1), got {args.ema_decay}")


def build_model(args: argparse.Namespace) -> AdaptiveUNet:
    if args.init:
        return load_model(args.init, skip_type=args.skip_type, fresh_bridges=True)
    return AdaptiveUNet(PRESETS[args.preset](), args.skip_type)


class Trainer:
    """Holds model, optimiser, EMA and the batch drawer; ``step(s)`` runs optimiser step s.

    Under torchrun each rank takes its slice of step s's global batch (drawn from (seed, s) on
    every rank) and DDP averages the gradients. Every rank skips the same k in a step, so the
    parameters of the skipped levels are unused on all ranks: DDP finds them
    (``find_unused_parameters``) and leaves their gradients None, and Adam leaves them alone,
    exactly as in a single process.
    """

    def __init__(self, args: argparse.Namespace, device: torch.device,
                 ranks: distributed.Ranks = distributed.Ranks()) -> None:
        self.args, self.device, self.ranks = args, device, ranks
        if args.batch_size % ranks.world:
            raise UserFacingError(f"--batch-size {args.batch_size} must divide evenly over "
                                  f"{ranks.world} processes")
        torch.manual_seed(seed_for(args.seed))  # initial weights (and fresh bridges)
        self.model = build_model(args).to(device)
        config = self.model.config
        self.dataset = load_dataset(args.data, config.resolution, config.in_channels)
        self.images = self.dataset.images.to(device)
        self.diffusion = (DiffusionConfig.from_dict(self.model.metadata["diffusion"]) if args.init
                          else DiffusionConfig())
        self.alphas_cumprod = torch.tensor(self.diffusion.alphas_cumprod(), device=device)
        self.drawer = BatchDrawer(args.scheme, config.num_levels, args.c, self.diffusion.num_timesteps,
                                  len(self.images), args.batch_size,
                                  (config.in_channels, config.resolution, config.resolution),
                                  self.dataset.flip, args.seed)
        self.network = self.model
        if ranks.world > 1:
            self.network = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.ema = EMA(self.model, args.ema_decay) if args.ema_decay > 0 else None
        self.step_count = 0
        self.pending_losses: list[float] = []  # losses since the last log line

    def learning_rate(self, step: int) -> float:
        return self.args.lr * min(1.0, (step + 1) / self.args.warmup) if self.args.warmup else self.args.lr

    def step(self) -> float:
        """One optimiser step; returns its loss."""
        s = self.step_count
        batch = self.drawer.draw(s).shard(self.ranks.rank, self.ranks.world)
        x0 = self.images[batch.indices.to(self.device)]
        x0 = torch.where(batch.flips.to(self.device)[:, None, None, None], x0.flip(-1), x0)
        noise, t = batch.noise.to(self.device), batch.timesteps.to(self.device)
        torch.manual_seed(seed_for(self.args.seed, s, self.ranks.rank))  # dropout, per (seed, step, rank)
        self.model.train()
        loss = epsilon_loss(self.network(q_sample(x0, t, noise, self.alphas_cumprod), t,
                                         skip_levels=batch.skip_levels), noise)
        global_loss = loss.detach().clone()
        if self.ranks.world > 1:  # the mean over the global batch: what every rank logs and checks
            torch.distributed.all_reduce(global_loss)
            global_loss /= self.ranks.world
        if not torch.isfinite(global_loss):
            raise UserFacingError(
                f"loss became {global_loss.item()} at step {s + 1}; stopped, the last checkpoint in "
                f"{self.args.out} is kept (try a lower --lr or --grad-clip)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(s)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step_count += 1
        self.pending_losses.append(global_loss.item())
        return self.pending_losses[-1]

    def rank_disagreement(self) -> float:
        """The largest difference between any rank's parameters and rank 0's (0 in one process)."""
        worst = torch.zeros((), device=self.device)
        if self.ranks.world > 1:
            for parameter in self.model.parameters():
                reference = parameter.detach().clone()
                torch.distributed.broadcast(reference, 0)
                worst = torch.maximum(worst, (parameter.detach() - reference).abs().max())
            torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
        return worst.item()

    def metadata(self) -> dict[str, Any]:
        return build_metadata(self.model, self.diffusion, self.args.c, self.args.scheme, self.ema is not None)

    def save(self, out: Path) -> None:
        """Write resume.pt, then last.safetensors, each atomically."""
        state = {
            "step": torch.tensor(self.step_count),
            "model": self.model.state_dict(),
            "ema": self.ema.shadow if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "pending_losses": torch.tensor(self.pending_losses, dtype=torch.float64),
            "args": json.dumps({name: getattr(self.args, name) for name in TRAJECTORY_FLAGS}),
            "metadata": json.dumps(self.metadata()),
        }
        with atomic_path(out / "resume.pt") as tmp:
            torch.save(state, tmp)
        weights = AdaptiveUNet(self.model.config, self.model.skip_type)
        weights.load_state_dict(self.ema.shadow if self.ema is not None else self.model.state_dict())
        save_model(weights, out / "last.safetensors", self.metadata())

    def restore(self, file: Path) -> None:
        try:
            state = torch.load(file, map_location=self.device, weights_only=True)
            stored = json.loads(state["args"])
        except Exception as error:  # any unreadable file: name it and stop
            raise UserFacingError(f"{file}: cannot resume from it ({type(error).__name__}: {error})") from None
        for name in TRAJECTORY_FLAGS:
            if stored.get(name) != getattr(self.args, name):
                flag = "--" + name.replace("_", "-")
                raise UserFacingError(
                    f"{flag} is {getattr(self.args, name)!r} but the run in {file.parent} used "
                    f"{stored.get(name)!r}; pass the same value to resume it exactly"
                )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.shadow = {name: value.to(self.device) for name, value in state["ema"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        self.step_count = int(state["step"])
        self.pending_losses = state.get("pending_losses", torch.zeros(0)).tolist()


def trim_log(log: Path, step: int) -> None:
    """Drop log lines after ``step``: those of a stopped run past its last save (all, on a fresh run)."""
    if not log.exists():
        return
    kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    with atomic_path(log) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def append_record(log: Path, record: dict[str, Any]) -> None:
    """One JSON line at the end of ``log``; its folder appears with the first line written."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    return distributed.run_on_ranks(train_main, args, cli.resolve_device(args.device))


def train_main(args: argparse.Namespace, ranks: distributed.Ranks, device: torch.device) -> int:
    """Train on this rank; rank 0 alone writes the log and the checkpoints. The inputs (flags,
    --init, --data) are checked before OUT, which appears with the first log line or checkpoint."""
    out = Path(args.out)
    resume_file, log_file = out / "resume.pt", out / "log.jsonl"
    if args.resume and not resume_file.exists():
        raise UserFacingError(f"{resume_file}: nothing to resume (no such file)")
    trainer = Trainer(args, device, ranks)
    if not args.resume and resume_file.exists():
        raise UserFacingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if ranks.main:
        check_writable(out)
    if args.resume:
        trainer.restore(resume_file)
    if ranks.main:
        trim_log(log_file, trainer.step_count)
        parameters = sum(p.numel() for p in trainer.model.parameters())
        print(f"training {args.preset if not args.init else args.init} ({parameters:,} parameters), "
              f"scheme {args.scheme}, skip type {args.skip_type}, c = {args.c:g}, on {device}"
              f"{f' × {ranks.world} processes' if ranks.world > 1 else ''}, "
              f"from step {trainer.step_count} to {args.steps}")
    started = time.perf_counter()
    with tqdm(total=args.steps, initial=trainer.step_count, desc="training", unit="step",
              disable=not ranks.main) as bar:
        while trainer.step_count < args.steps:
            loss = trainer.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            step = trainer.step_count
            if step % args.log_every == 0 or step == args.steps:
                losses = trainer.pending_losses
                record = {"step": step, "loss": sum(losses) / len(losses),
                          "lr": trainer.learning_rate(step - 1),
                          "elapsed_s": round(time.perf_counter() - started, 2)}
                if ranks.main:
                    append_record(log_file, record)
                losses.clear()
            if ranks.main and (step % args.save_every == 0 or step == args.steps):
                trainer.save(out)
    disagreement = trainer.rank_disagreement()
    if ranks.main:
        if ranks.world > 1:
            print(f"{ranks.world} ranks agree: largest parameter difference {disagreement:g}")
        print(f"done: {out / 'last.safetensors'}")
    return 0


if __name__ == "__main__":
    cli.run(main)
