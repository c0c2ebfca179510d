"""How long and how much: a job's demand on the box, estimated from the offer alone (pure functions).

Offers carry the model, its size, the task type and the hours, but not the dataset size (text
offers always say 100 000 rows). The validator draws the hours from the dataset's row bin
(protocol.md §4.3), so the hours bound the rows: that is the estimate used here. Training is
elastic: a job trains its planned epochs or until its deadline, whichever comes first, and is worth
submitting once it has trained ``min_train_fraction`` of the time it could have had.
"""

from __future__ import annotations

from dataclasses import dataclass

from godminer import sizing
from godminer.scoring import ERAS
from godminer.settings import EstimateSettings, GpuSettings

# The real-time era's bins (rows → hours range), from the validator's constants.
_ROW_BINS = ERAS["2025-07-21"].text_hours
# Image LoRA runs: a fixed number of steps on 10-50 images (seconds on one H100).
IMAGE_TRAIN_S = {"sdxl": 1800.0, "flux": 2700.0}
DATA_PREP_S = 60.0
SAVE_S = 30.0
HASH_GB_S = 1.0
LOAD_GB_S = 2.0


def rows_for_hours(hours: float) -> float:
    """Typical rows of a task given its hours: the geometric middle of the bins that could give them."""
    candidates = [(lo * hi) ** 0.5 for lo, hi, h_lo, h_hi in _ROW_BINS if h_lo - 0.5 <= hours <= h_hi + 0.5]
    if not candidates:
        return 500_000.0 if hours > 10 else 5_000.0
    return max(candidates)


@dataclass(frozen=True)
class JobDemand:
    """What one job asks of the box."""

    task_id: str
    kind: str
    params_b: float
    method: str
    gpus: int
    mem_per_gpu_gb: float
    prefetch_s: float  # download of model and data, off the GPUs, from receipt
    load_s: float  # loading onto the GPUs and data preparation, at the start of the reservation
    full_train_s: float  # training the planned epochs
    min_train_s: float  # the least training worth submitting
    save_s: float  # final save, still on the GPUs
    upload_s: float  # hash and upload, off the GPUs
    ready_at: float  # when prefetch is done: the earliest start on GPUs
    deadline: float  # termination_at
    priority: int = 0


def demand(
    *,
    task_id: str,
    kind: str,
    params_b: float,
    hours: float,
    received_at: float,
    gpu_memory_gb: float,
    gpus: GpuSettings,
    est: EstimateSettings,
    min_train_fraction: float,
    priority: int = 0,
    prefetch_done: bool = False,
) -> JobDemand:
    """Estimate a job's demand; ``received_at`` is when the budget started (start-training receipt)."""
    method = sizing.finetune_method(params_b, kind)
    n_gpus = sizing.gpus_needed(params_b, kind, method, gpu_memory_gb)
    weights_gb = 2.0 * params_b
    prefetch_s = 0.0 if prefetch_done else weights_gb * 1000.0 / est.download_mb_s + 5.0
    load_s = weights_gb / LOAD_GB_S + DATA_PREP_S
    artefact = sizing.artefact_gb(params_b, kind, method)
    upload_s = artefact * 1000.0 / est.upload_mb_s + artefact / HASH_GB_S + 10.0
    if kind in sizing.IMAGE_PARAMS_B:
        full_train_s = IMAGE_TRAIN_S[kind]
    else:
        tokens = rows_for_hours(hours) * est.tokens_per_row * sizing.KIND_COST[kind] * sizing.PLANNED_EPOCHS[kind]
        per_second = n_gpus * gpus.tflops * 1e12 * gpus.mfu / sizing.flops_per_token(params_b, method)
        full_train_s = tokens / per_second
    deadline = received_at + hours * 3600.0
    available = hours * 3600.0 - prefetch_s - load_s - SAVE_S - upload_s - est.safety_margin_s
    min_train_s = min(full_train_s, min_train_fraction * max(available, 0.0))
    return JobDemand(
        task_id=task_id, kind=kind, params_b=params_b, method=method, gpus=n_gpus,
        mem_per_gpu_gb=sizing.memory_per_gpu_gb(params_b, kind, method, n_gpus),
        prefetch_s=prefetch_s, load_s=load_s, full_train_s=full_train_s, min_train_s=max(min_train_s, 0.0),
        save_s=SAVE_S, upload_s=upload_s, ready_at=received_at + prefetch_s, deadline=deadline,
        priority=priority,
    )


def fits_budget(d: JobDemand, safety_s: float) -> bool:
    """Could the job be done in its budget on an idle box?"""
    spare = d.deadline - safety_s - d.upload_s - d.save_s - d.ready_at - d.load_s
    return spare >= d.min_train_s and spare > 0


def disk_needed_gb(params_b: float, kind: str) -> float:
    """Disk a job needs: the base model, two checkpoints of the trainable part, the final model."""
    method = sizing.finetune_method(params_b, kind)
    artefact = sizing.artefact_gb(params_b, kind, method)
    return 2.0 * params_b + 3 * artefact + 2.0
