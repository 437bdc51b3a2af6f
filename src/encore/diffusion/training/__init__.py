"""One training loop for every way of training the denoiser.

:class:`TrainingLoop` owns what all methods share — optimiser, learning-rate schedule, EMA,
evaluation cadence, best weights and early stopping, checkpoints and exact resume, the loss
log, seeding and RNG state. A method supplies a model, a :class:`BatchSource` and an
:class:`Objective` (see :mod:`encore.diffusion.training.objectives` and ``docs/finetune.md``):

- base training (:func:`encore.diffusion.train.train`): corpus crops, :class:`EpsilonLoss`;
- the paper's fine-tune (:func:`encore.diffusion.finetune.finetune`): confidence-weighted clip
  crops mixed with replay crops, :class:`EpsilonLoss` with weights, best-weights selection.
"""

from encore.diffusion.training.loop import (
    BestWeights,
    DictConfig,
    Evaluator,
    LoopConfig,
    LoopOutcome,
    LoopStatus,
    TrainingLoop,
    cpu_state,
    round_or_none,
)
from encore.diffusion.training.objectives import (
    BatchSource,
    EpsilonLoss,
    LossContext,
    Objective,
    PairBatch,
    WeightedBatch,
    weighted_diffusion_loss,
)
from encore.diffusion.training.state import (
    CHECKPOINT_FILE,
    EMA,
    LOG_FILE,
    atomic_torch_save,
    autocast,
    bf16_supported,
    load_checkpoint,
    lr_at,
    read_log,
    rng_state,
    seed_everything,
    set_rng_state,
    use_bf16,
)

__all__ = [
    "CHECKPOINT_FILE", "EMA", "LOG_FILE", "BatchSource", "BestWeights", "DictConfig", "EpsilonLoss", "Evaluator",
    "LoopConfig", "LoopOutcome", "LoopStatus", "LossContext", "Objective", "PairBatch",
    "TrainingLoop", "WeightedBatch", "atomic_torch_save", "autocast", "bf16_supported", "cpu_state",
    "load_checkpoint", "lr_at", "read_log", "rng_state", "round_or_none", "seed_everything", "set_rng_state",
    "use_bf16", "weighted_diffusion_loss",
]
