"""What DDP's ``find_unused_parameters=True`` costs in skip-aware training, against the
alternatives: time per optimiser step of each way of averaging the gradients over processes.

    python benchmarks/ddp_unused.py [--world 2] [--preset digits] [--batch 64] [--steps 40]

Under the constant-k and random schemes the skipped levels' parameters get no gradient in a step,
so DDP must be told to look for them (``train.py`` does). Variants, every one from the same
weights over the same batches, one step of each in turn (the drift of a shared machine hits all):

* ``ddp-static``: DDP with ``find_unused_parameters=False`` at k = 0 (scheme ``full``); with k > 0
  this setting fails at the next step, so it is the reference for the flag's own cost.
* ``ddp-find``: DDP with ``find_unused_parameters=True`` at k = 0: the flag's cost where it is
  not needed (it walks the autograd graph after every forward).
* ``ddp-find-k``: the same with the constant-k scheme's k at c = 2: what ``train.py`` runs.
* ``manual-k``: no DDP; after the backward one all-reduce of the gradients that exist, flattened.
* ``local-k``: one process's share of the batch, no communication: the floor.

The largest parameter difference between ``ddp-find-k`` and ``manual-k`` after the run checks
that the two average the same gradients. CPU: gloo, ``--threads`` per process; CUDA: NCCL, one GPU
per process. Writes benchmarks/results/ddp-<preset>-<device>.{json,md} (or --out DIR).
"""
from __future__ import annotations

import copy
import socket
import statistics
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel

from adaskip_ext.diffusion import DiffusionConfig, epsilon_loss, q_sample
from adaskip_ext.model import PRESETS, AdaptiveUNet
from adaskip_ext.seeds import seed_for
from adaskip_ext.timing import elapsed
from adaskip_ext.training import BatchDrawer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import metadata, parse, parser_for, write_results  # noqa: E402

VARIANTS = ("ddp-static", "ddp-find", "ddp-find-k", "manual-k", "local-k")
WARMUP = 3  # steps left out of the medians


def average_present_gradients(model: torch.nn.Module, world: int) -> None:
    """All-reduce (mean) the gradients that exist, as one flat buffer."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(reduced)


class Variant:
    """One model, optimiser and gradient-averaging choice; ``step(s)`` times optimiser step s."""

    def __init__(self, name: str, model: AdaptiveUNet, device: torch.device, world: int) -> None:
        self.name, self.world = name, world
        self.model = copy.deepcopy(model)
        self.network: torch.nn.Module = self.model
        if name.startswith("ddp"):
            self.network = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=name != "ddp-static")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.times: list[float] = []

    def step(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, k: int,
             alphas_cumprod: torch.Tensor, dropout_seed: int, device: torch.device) -> None:
        def run() -> None:
            torch.manual_seed(dropout_seed)
            self.optimizer.zero_grad(set_to_none=True)
            loss = epsilon_loss(self.network(q_sample(x, t, noise, alphas_cumprod), t, skip_levels=k), noise)
            loss.backward()
            if self.name == "manual-k":
                average_present_gradients(self.model, self.world)
            self.optimizer.step()

        self.times.append(elapsed(run, device))


def worker(rank: int, args, port: int, meta: dict) -> None:
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world)
    torch.manual_seed(0)
    model = AdaptiveUNet(PRESETS[args.preset](), "zero").to(device).train()
    c = model.config
    shape = (c.in_channels, c.resolution, c.resolution)
    images = torch.rand((256, *shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
    alphas_cumprod = torch.tensor(DiffusionConfig().alphas_cumprod(), device=device)
    drawers = {scheme: BatchDrawer(scheme, c.num_levels, 2.0, 1000, len(images), args.batch, shape,
                                   False, 0) for scheme in ("full", "constant-k")}
    variants = [Variant(name, model, device, args.world) for name in VARIANTS]
    levels: list[int] = []
    for s in range(args.steps):
        for variant in variants:
            scheme = "constant-k" if variant.name.endswith("-k") else "full"
            batch = drawers[scheme].draw(s).shard(rank, args.world)  # this process's share
            x = images[batch.indices].to(device)
            variant.step(x, batch.timesteps.to(device), batch.noise.to(device), batch.skip_levels,
                         alphas_cumprod, seed_for(0, s, rank), device)
        levels.append(drawers["constant-k"].draw(s).skip_levels)
    difference = max((a.detach() - b.detach()).abs().max()
                     for a, b in zip(variants[2].model.parameters(), variants[3].model.parameters()))
    difference = difference.reshape(1).to(device)
    dist.all_reduce(difference, op=dist.ReduceOp.MAX)
    if rank == 0:
        report(args, meta, variants, levels, float(difference))
    dist.destroy_process_group()


def report(args, meta: dict, variants: list[Variant], levels: list[int], difference: float) -> None:
    medians = {v.name: statistics.median(v.times[WARMUP:]) * 1e3 for v in variants}
    rows = [{"variant": name, "ms_per_step": ms} for name, ms in medians.items()]
    meta = {**meta, "world": args.world, "preset": args.preset, "global_batch": args.batch,
            "steps": args.steps, "levels": levels, "ddp_vs_manual_max_difference": difference}
    flag = medians["ddp-find"] / medians["ddp-static"] - 1
    versus_manual = medians["ddp-find-k"] / medians["manual-k"] - 1
    table = "\n".join([
        f"# find_unused_parameters: {meta['device']}", "",
        f"torch {meta['torch']}, commit {meta['commit']}, {meta['date']}. {args.world} processes, "
        f"`{args.preset}` preset, global batch {args.batch}, median of {args.steps - WARMUP} steps "
        f"per variant (the constant-k steps ran k = {', '.join(str(levels.count(k)) + '× ' + str(k) for k in sorted(set(levels)))}).",
        "", "| variant | ms per step |", "|---|---:|",
        *(f"| {name} | {ms:.1f} |" for name, ms in medians.items()), "",
        f"find_unused_parameters=True at k = 0 costs {flag:+.1%} per step against False; with the "
        f"constant-k scheme DDP with the flag takes {versus_manual:+.1%} against one manual "
        f"all-reduce of the gradients that exist. Largest parameter difference between the two at "
        f"the end: {difference:.2g}.", ""])
    write_results(args.out, f"ddp-{args.preset}-{args.device}", meta, rows, table)
    print(table)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__, threads=1)
    parser.add_argument("--world", type=int, default=2, help="processes (default: 2)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default: 64)")
    parser.add_argument("--steps", type=int, default=40, help="steps per variant (default: 40)")
    args = parse(parser, argv)
    if args.world < 2 or args.batch % args.world or args.steps <= WARMUP:
        parser.error(f"need --world ≥ 2 dividing --batch, and --steps > {WARMUP}")
    if args.device == "cuda" and torch.cuda.device_count() < args.world:
        parser.exit(2, f"{parser.prog}: --world {args.world} needs as many GPUs, "
                       f"found {torch.cuda.device_count()}\n")
    meta = metadata(args.device)
    meta["device"] = (f"{args.world} × {torch.cuda.get_device_name()}" if args.device == "cuda"
                      else f"{args.world} processes × {args.threads} CPU thread(s)")
    mp.spawn(worker, args=(args, free_port(), meta), nprocs=args.world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
