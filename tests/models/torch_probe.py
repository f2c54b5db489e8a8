"""An nn.Module that reports how torchserver calls it (tests/runtimes/test_torch.py).

Its outputs are facts about the call: whether inference mode and autograd
were on, how many intra-op threads torch had, and its inputs as they
arrived (so their dtypes show what the server converted). It is served
pickled whole (``torch.save(Probe())``, with ``--allow_pickle``), so the
server imports this module by name: tests/models must be on PYTHONPATH.
"""

from __future__ import annotations

import torch
from torch import nn


class Probe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), 2.0))

    def forward(self, x: torch.Tensor, count: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = x.shape[0]
        return {
            "scaled": x * self.scale,
            "x": x,
            "count": count,
            "inference_mode": torch.full((rows,), torch.is_inference_mode_enabled()),
            "grad_enabled": torch.full((rows,), torch.is_grad_enabled()),
            "threads": torch.full((rows,), torch.get_num_threads()),
        }
