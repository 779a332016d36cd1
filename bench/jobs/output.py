"""What a job returns to the executor, which writes it to disk and the store atomically."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from bench.evaluation.rows import CertificateRow, ResultRow


@dataclass
class JobOutput:
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    results: list[ResultRow] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    #: A certify job's per-example certificates, in evaluation order.
    certificates: list[CertificateRow] = field(default_factory=list)
