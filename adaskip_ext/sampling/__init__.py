"""Sampling: the plan (timesteps and the k of each step), one step, the step runners (eager, one
CUDA graph per k), the loop over batches, and resumable parts on disk.

Imports point down: ``loop`` → ``runners`` → ``step`` → ``plan``; ``parts`` stands alone.
"""
from .loop import prepare_model, run_plan, sample_images
from .plan import SamplerConfig, SamplingPlan, checkpoint_schedule, time_sequence

__all__ = ["SamplerConfig", "SamplingPlan", "checkpoint_schedule", "prepare_model", "run_plan",
           "sample_images", "time_sequence"]
