"""One process, or one rank of a `torchrun` launch: the device, the barrier, and the mean over ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    """One process, or one rank of a `torchrun` launch (WORLD_SIZE/RANK/LOCAL_RANK set by torchrun)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str = "auto") -> "Distributed":
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, torch.device(device))
        import torch.distributed as dist

        local = int(os.environ["LOCAL_RANK"])
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if device.startswith("cuda") else "cpu"))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, value: float) -> float:
        """The mean of a per-rank number over all ranks (the logged loss)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.device)
        torch.distributed.all_reduce(t)
        return float(t) / self.world

    def stop(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()
