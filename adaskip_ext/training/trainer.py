"""The trainer: a typed configuration, the optimiser loop with EMA, and exact resumes.

``Trainer(TrainConfig(...)).run()`` trains from Python as ``python -m adaskip_ext.train`` does
from the shell (the CLI only builds the configuration). ``OUT`` receives ``last.safetensors``
(EMA weights when EMA is on), ``resume.pt`` (everything an exact resume needs, loadable with
``torch.load(weights_only=True)``) and ``log.jsonl``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import distributed
from ..checkpoints import build_metadata, load_model, save_model
from ..cli import resolve_device
from ..data import load_dataset
from ..diffusion import DiffusionConfig, epsilon_loss, q_sample
from ..io_utils import InvalidSetting, MissingFileError, UserFacingError, atomic_path, check_writable
from ..model import PRESETS, SKIP_TYPES, AdaptiveUNet
from ..seeds import seed_for
from .draws import SCHEMES, BatchDrawer


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run (the CLI's flags, one field each)."""

    preset: str = "digits"          # model size: a name in model.PRESETS (ignored with init)
    data: str = "digits"            # 'digits' (embedded), 'folder:PATH' or 'cifar10:PATH'
    scheme: str = "constant-k"      # full: k = 0; random: k uniform per batch; constant-k: one k(t) per batch
    skip_type: str = "zero"         # what feeds the first active up block when levels are skipped
    c: float = 2.0                  # exponent of k(t) (constant-k; stored as the sampling default)
    steps: int = 10000              # total optimiser steps
    batch_size: int = 64            # global batch size (over all processes)
    lr: float = 2e-4                # Adam learning rate after warm-up
    warmup: int = 1000              # linear learning-rate warm-up steps
    grad_clip: float = 1.0          # gradient norm clip (0 disables)
    ema_decay: float = 0.9999       # EMA decay (0 disables EMA)
    init: str | None = None         # start from this checkpoint's weights (None: fresh preset)
    resume: bool = False            # continue exactly from OUT/resume.pt
    save_every: int = 1000          # checkpoint interval in steps
    log_every: int = 50             # loss-log interval in steps
    out: str = "runs/train"         # output directory
    device: str = "auto"            # cpu, cuda, cuda:1, … or auto (CUDA if present)
    seed: int = 0                   # seed of every random draw

    # Fields that change the training trajectory: a resumed run must use the values it started with.
    TRAJECTORY = ("preset", "data", "scheme", "skip_type", "c", "batch_size", "lr", "warmup",
                  "grad_clip", "ema_decay", "init", "seed")

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise InvalidSetting("preset", f"must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.scheme not in SCHEMES:
            raise InvalidSetting("scheme", f"must be one of {SCHEMES}, got {self.scheme!r}")
        if self.skip_type not in SKIP_TYPES:
            raise InvalidSetting("skip_type", f"must be one of {SKIP_TYPES}, got {self.skip_type!r}")
        for name in ("steps", "batch_size", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise InvalidSetting(name, f"must be positive, got {getattr(self, name)}")
        for name in ("lr", "warmup", "grad_clip", "c"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidSetting(name, f"must be a finite number >= 0, got {value}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidSetting("ema_decay", f"must lie in [0, 1), got {self.ema_decay}")


class EMA:
    """Exponential moving average of a model's parameters (and buffers, copied)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {name: value.detach().clone() for name, value in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].lerp_(value, 1.0 - self.decay)
            else:
                self.shadow[name].copy_(value)


def build_model(config: TrainConfig) -> AdaptiveUNet:
    if config.init:
        return load_model(config.init, skip_type=config.skip_type, fresh_bridges=True)
    return AdaptiveUNet(PRESETS[config.preset](), config.skip_type)


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


class Trainer:
    """Holds model, optimiser, EMA and the batch drawer; ``step()`` runs one optimiser step and
    ``run()`` the whole configured run.

    Under torchrun each rank takes its slice of step s's global batch (drawn from (seed, s) on
    every rank) and DDP averages the gradients. Every rank skips the same k in a step, so the
    parameters of the skipped levels are unused on all ranks: DDP finds them
    (``find_unused_parameters``) and leaves their gradients None, and Adam leaves them alone,
    exactly as in a single process.
    """

    def __init__(self, config: TrainConfig, device: torch.device | None = None,
                 ranks: distributed.Ranks = distributed.Ranks()) -> None:
        device = device if device is not None else resolve_device(config.device)
        self.config, self.device, self.ranks = config, device, ranks
        self.out = Path(config.out)
        if config.resume and not (self.out / "resume.pt").exists():
            raise MissingFileError(f"{self.out / 'resume.pt'}: nothing to resume (no such file)")
        if config.batch_size % ranks.world:
            raise InvalidSetting("batch_size", f"{config.batch_size} must divide evenly over "
                                               f"{ranks.world} processes")
        torch.manual_seed(seed_for(config.seed))  # initial weights (and fresh bridges)
        self.model = build_model(config).to(device)
        model_config = self.model.config
        self.dataset = load_dataset(config.data, model_config.resolution, model_config.in_channels)
        self.images = self.dataset.images.to(device)
        self.diffusion = (DiffusionConfig.from_dict(self.model.metadata["diffusion"]) if config.init
                          else DiffusionConfig())
        self.alphas_cumprod = torch.tensor(self.diffusion.alphas_cumprod(), device=device)
        self.drawer = BatchDrawer(config.scheme, model_config.num_levels, config.c,
                                  self.diffusion.num_timesteps, len(self.images), config.batch_size,
                                  (model_config.in_channels, model_config.resolution,
                                   model_config.resolution),
                                  self.dataset.flip, config.seed)
        self.network = self.model
        if ranks.world > 1:
            self.network = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.step_count = 0
        self.pending_losses: list[float] = []  # losses since the last log line

    def learning_rate(self, step: int) -> float:
        lr, warmup = self.config.lr, self.config.warmup
        return lr * min(1.0, (step + 1) / warmup) if warmup else lr

    def step(self) -> float:
        """One optimiser step; returns its loss."""
        s = self.step_count
        batch = self.drawer.draw(s).shard(self.ranks.rank, self.ranks.world)
        x0 = self.images[batch.indices.to(self.device)]
        x0 = torch.where(batch.flips.to(self.device)[:, None, None, None], x0.flip(-1), x0)
        noise, t = batch.noise.to(self.device), batch.timesteps.to(self.device)
        torch.manual_seed(seed_for(self.config.seed, s, self.ranks.rank))  # dropout, per (seed, step, rank)
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
                f"{self.out} is kept (try a lower --lr or --grad-clip)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
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
        return build_metadata(self.model, self.diffusion, self.config.c, self.config.scheme,
                              self.ema is not None)

    def save(self, out: Path) -> None:
        """Write resume.pt, then last.safetensors, each atomically."""
        state = {
            "step": torch.tensor(self.step_count),
            "model": self.model.state_dict(),
            "ema": self.ema.shadow if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "pending_losses": torch.tensor(self.pending_losses, dtype=torch.float64),
            "args": json.dumps({name: getattr(self.config, name) for name in TrainConfig.TRAJECTORY}),
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
        except Exception as error:  # unpickling arbitrary bytes fails in open-ended ways: name the file
            raise UserFacingError(f"{file}: cannot resume from it ({type(error).__name__}: {error})") from None
        try:
            stored = json.loads(state["args"])
        except (TypeError, KeyError, ValueError) as error:
            raise UserFacingError(f"{file}: cannot resume from it ({type(error).__name__}: {error})") from None
        for name in TrainConfig.TRAJECTORY:
            if stored.get(name) != getattr(self.config, name):
                flag = "--" + name.replace("_", "-")
                raise UserFacingError(
                    f"{flag} is {getattr(self.config, name)!r} but the run in {file.parent} used "
                    f"{stored.get(name)!r}; pass the same value to resume it exactly"
                )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.shadow = {name: value.to(self.device) for name, value in state["ema"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].cpu())
        self.step_count = int(state["step"])
        self.pending_losses = state.get("pending_losses", torch.zeros(0)).tolist()

    def run(self) -> Path:
        """Train to ``config.steps`` (from OUT/resume.pt with ``resume``); rank 0 alone writes the
        log and the checkpoints. Returns the path of ``last.safetensors``. OUT is checked after
        the inputs (``init``, ``data``) and appears with the first log line or checkpoint."""
        config, ranks, out = self.config, self.ranks, self.out
        resume_file, log_file = out / "resume.pt", out / "log.jsonl"
        if not config.resume and resume_file.exists():
            raise UserFacingError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        if ranks.main:
            check_writable(out)
        if config.resume:
            self.restore(resume_file)
        if ranks.main:
            trim_log(log_file, self.step_count)
            parameters = sum(p.numel() for p in self.model.parameters())
            print(f"training {config.preset if not config.init else config.init} ({parameters:,} parameters), "
                  f"scheme {config.scheme}, skip type {config.skip_type}, c = {config.c:g}, on {self.device}"
                  f"{f' × {ranks.world} processes' if ranks.world > 1 else ''}, "
                  f"from step {self.step_count} to {config.steps}")
        started = time.perf_counter()
        with tqdm(total=config.steps, initial=self.step_count, desc="training", unit="step",
                  disable=not ranks.main) as bar:
            while self.step_count < config.steps:
                loss = self.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                step = self.step_count
                if step % config.log_every == 0 or step == config.steps:
                    losses = self.pending_losses
                    record = {"step": step, "loss": sum(losses) / len(losses),
                              "lr": self.learning_rate(step - 1),
                              "elapsed_s": round(time.perf_counter() - started, 2)}
                    if ranks.main:
                        append_record(log_file, record)
                    losses.clear()
                if ranks.main and (step % config.save_every == 0 or step == config.steps):
                    self.save(out)
        disagreement = self.rank_disagreement()
        if ranks.main:
            if ranks.world > 1:
                print(f"{ranks.world} ranks agree: largest parameter difference {disagreement:g}")
            print(f"done: {out / 'last.safetensors'}")
        return out / "last.safetensors"
