"""Distillation hyper-parameters; torch-free so the CLI can build its flags from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from influcoder.core.errors import SettingError

_RANGES = {
    "epochs": "at least 1 (0 with `objective` subspace: the ridge fit on the frozen backbone only)",
    "max_length": "at least 1",
    "backbone_layers": "at least 1 (or unset: every block)",
    "queries_per_batch": "at least 1",
    "candidates_per_batch": "at least 1",
    "hard_candidates": "0 to `candidates_per_batch`",
    "val_fraction": "above 0 (a validation split selects the best epoch) and below 1",
    "warmup": "0 to below 1 (a fraction of the steps)",
    "alpha": "0 to 1",
    "lr": "above 0",
    "temperature": "above 0",
    "group_size": "1 to `candidates_per_batch`",
    "groups_per_batch": "at least 2 (a ranking needs two groups)",
    "subspace_k": "at least 1",
    "subspace_ridge": "0 or more",
    "kernel_gamma": "above 0",
    "kernel_landmarks": "at least 1",
    "subspace_batch": "at least 2 (a correlation over the batch)",
}
TEXT_ENCODER = "minilm-l6"
"""The backbone of the cosine objectives, and of the subspace objective on labels that name no decoder."""
TEXT_VIEW = "{prompt}\n\n{response}"
"""A text encoder's view of a sample: prompt and response as two paragraphs."""
LABEL_VIEWS = {"chat-template": "chat-template", "plain": "{prompt}\n{response}"}
"""The encoder's text view that reads a sample as `label` read it, by the view its labels record
(`SampleFormatter.view`; the plain view's end-of-sequence token aside)."""
DECODER_READ_DEPTH = 2 / 3
"""Where `distill` reads the labels' decoder by default, as a share of its blocks: on SmolLM2-135M-Instruct
block 20 of 30 ranked unseen tasks, seen tasks and unseen sources better than the last block, at two thirds of
the pass (docs/results/transfer.md, "Which block to read"; one decoder measured)."""
HeadKind = Literal["kernel", "linear"]
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)
KERNEL_GAMMA = 1.0
"""Width of the kernel head's Gaussian kernel, exp(-gamma * squared distance / dimension) on standardised
states (`influcoder.encoder.heads`)."""
KERNEL_RIDGE = 0.3
"""Penalty of the kernel head's kernel ridge regression (the kernel's diagonal is 1)."""
LINEAR_RIDGE = 1000.0
"""Penalty of the linear head's ridge regression on standardised states."""
KERNEL_LANDMARKS = 4096
"""At most this many training states become the kernel head's landmarks (a seeded sample beyond): exact
kernel ridge up to that many training texts, a subset-of-regressors fit beyond, and a stored head that grows
with them (4,096 x 580 float32: 9.5 MB)."""
Objective = Literal["influcoder", "airrep", "subspace"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
Pooling = Literal["mean", "cls", "attention", "response", "mean+response"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
RESPONSE_POOLINGS = ("response", "mean+response")
PearsonCentering = Literal["none", "query"]
PEARSON_CENTERINGS: tuple[str, ...] = get_args(PearsonCentering)


@dataclass
class DistillSettings:
    """Training hyper-parameters (paper defaults where the paper gives them)."""

    encoder: str | None = None
    """Backbone: an embedded model name or a local HF model directory. Default: with the subspace objective,
    the decoder the labels were computed with (its response-token states transfer to unseen tasks:
    docs/results/transfer.md); with the cosine objectives, minilm-l6."""
    pooling: Pooling | None = None
    """Pooling: mean, cls, attention, response (mean over the response tokens) or mean+response. Default:
    response on the labels' decoder, mean on a text encoder."""
    text_view: str | None = None
    """How a sample becomes the encoder's input text: a format with {prompt} and {response}, or
    ``chat-template`` (the backbone's chat template). Default: on the labels' decoder, the view the labels
    read (`label`'s rendering); on a text encoder, prompt and response on two paragraphs."""
    head_dim: int | None = None
    """Linear head output dim (None: no head)."""
    max_length: int = 256
    """Encoder tokens per text."""
    backbone_layers: int | None = None
    """Read the backbone cut after its first this-many blocks; a decoder's pass over each pool sample then
    costs about that share of the whole. Default: on the labels' decoder with the subspace objective, two
    thirds of its blocks (`DECODER_READ_DEPTH`, made concrete when `distill` starts: docs/results/transfer.md
    measures the ranking by block); otherwise every block."""
    epochs: int | None = None
    """Passes; one epoch offers every training pool sample once as a candidate. With the subspace objective, 0
    keeps the ridge fit on the frozen backbone's pooled states (epoch 0). Default: 0 on the labels' decoder
    with the subspace objective (the decoder stays frozen), 10 otherwise."""
    lr: float = 5e-5
    """AdamW learning rate of the backbone."""
    head_lr_scale: float = 20.0
    """Learning rate of the new pooling/head parameters, as a multiple of lr (at lr they barely move)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup: float = 0.1
    """Fraction of steps of linear learning-rate warm-up."""
    alpha: float = 0.5
    """Weight of the Pearson loss; 1 - alpha weighs the KL."""
    temperature: float = 0.1
    """Softmax temperature of the KL loss, on cosine scales."""
    pearson_center: PearsonCentering = "none"
    """Pearson over the raw batch matrix (none, the paper's) or after centring each query's row (query)."""
    queries_per_batch: int = 12
    """B: queries per step."""
    candidates_per_batch: int = 15
    """C: pool candidates per step."""
    hard_candidates: int = 0
    """Of the C candidates, how many come from the top of a sampled query's true ranking."""
    val_fraction: float = 0.1
    """Fraction of training pool and queries held out for model selection."""
    val_group: str | None = None
    """Hold out whole groups of this meta field (e.g. task) for validation instead of random samples: the best
    epoch is then chosen on tasks training never saw, as a user's pool mostly is; a random split picks the
    epoch that fits the training tasks best, which overstates how it ranks unseen tasks
    (docs/results/generalization.md)."""
    length_prior: bool = False
    """After training, fit a per-pool-sample prior on length features and add it to the cosine, with its weight
    chosen on the validation split (`influcoder.encoder.length_prior`; choose it on unseen tasks with
    --val-group). Fitted after training, so it is not part of what a resumed run must match."""
    grad_clip: float = 1.0
    """Max gradient norm."""
    seed: int = 0
    """Seed of splits, sampling, and head initialisation."""
    init: str | None = None
    """Continued distillation: start from this encoder (an encoder or distill output directory) instead of a
    fresh backbone; its backbone, pooling, head and max length replace the flags above."""
    objective: Objective = "subspace"
    """subspace (the default: it ranks tasks the labels never saw, docs/results/transfer.md): regress each
    training text's gradient coordinates on the training gradients' top --subspace-k directions (plus alpha *
    the per-query Pearson), queries scored by their exact gradients (`encoder.subspace`); influcoder: cosine
    embeddings fitted with alpha * Pearson + (1 - alpha) * KL (the paper; no decoder at query time); airrep:
    AirRep's group-wise ranking loss (random groups of candidates, attention-pooled scores, pairwise ranking
    by summed true influence)."""
    subspace_k: int = 256
    """subspace: how many of the training gradients' top singular directions the encoder predicts."""
    subspace_head: HeadKind = "kernel"
    """subspace: the head on the pooled states. kernel (the default: a Gaussian kernel against the training
    texts' states, fitted by kernel ridge regression; it ranks unseen tasks and sources better than a linear
    map of the same states, docs/results/transfer.md "Kernel head") or linear (a ridge regression)."""
    subspace_ridge: float | None = None
    """subspace: penalty of the head's closed-form starting fit. Default: 0.3 for the kernel head (on the
    kernel), 1000 for the linear head (on standardised pooled states)."""
    kernel_gamma: float = KERNEL_GAMMA
    """subspace, kernel head: the kernel's width, exp(-gamma * squared distance / dimension)."""
    kernel_landmarks: int = KERNEL_LANDMARKS
    """subspace, kernel head: at most this many training states are kept as landmarks (a seeded sample
    beyond); the saved head grows with them."""
    subspace_batch: int = 32
    """subspace: pool samples per step."""
    states_cache: bool = True
    """subspace on a frozen backbone: keep its pooled states in the asset cache (``pooled-states/``), so that
    another run on the same texts (another seed, split, head) skips the backbone pass; results are the same."""
    group_size: int = 3
    """airrep: candidates per group."""
    groups_per_batch: int = 8
    """airrep: groups ranked per query and step."""

    def resolved(self, features: Mapping[str, Any] | None = None) -> DistillSettings:
        """These settings with every default that depends on the backbone (None) made concrete, for labels of
        the gradient `features` (a labels record's ``features``: the decoder's name and the text view it read).
        What a run records and resumes by is always the resolved settings."""
        features = features or {}
        decoder = features.get("model")
        encoder = self.encoder or (decoder if self.objective == "subspace" and decoder else TEXT_ENCODER)
        on_decoder = decoder is not None and encoder == decoder
        view = LABEL_VIEWS.get(features.get("text_view"), TEXT_VIEW) if on_decoder else TEXT_VIEW
        frozen = on_decoder and self.objective == "subspace"
        return replace(
            self,
            encoder=encoder,
            pooling=self.pooling or ("response" if on_decoder else "mean"),
            text_view=self.text_view or view,
            epochs=self.epochs if self.epochs is not None else (0 if frozen else 10),
            subspace_head=self.subspace_head if self.objective == "subspace" else "linear",  # no head otherwise
            subspace_ridge=self.head_ridge(),
        )

    def head_ridge(self) -> float:
        """The subspace head's penalty: as given, or its head's default (the linear one's, 1,000, for the cosine
        objectives, which fit no such head: what their runs recorded before the kernel head existed)."""
        if self.subspace_ridge is not None:
            return self.subspace_ridge
        return KERNEL_RIDGE if self.objective == "subspace" and self.subspace_head == "kernel" else LINEAR_RIDGE

    def key(self) -> dict:
        """The settings as a resumed run must match them (`influcoder.core.run_keys.same_run` lets runs
        written before a setting existed resume at its default)."""
        values = asdict(self)
        values.pop("length_prior")  # applied after training: changes nothing a resumed run repeats
        values.pop("states_cache")  # where states come from, not what they are
        return values

    def __post_init__(self) -> None:
        """Refuse settings that would fail, or train on nothing, only after an epoch of work."""
        checks = {
            "epochs": self.epochs is None or self.epochs >= (0 if self.objective == "subspace" else 1),
            "max_length": self.max_length >= 1,
            "backbone_layers": self.backbone_layers is None or self.backbone_layers >= 1,
            "queries_per_batch": self.queries_per_batch >= 1,
            "candidates_per_batch": self.candidates_per_batch >= 1,
            "hard_candidates": 0 <= self.hard_candidates <= self.candidates_per_batch,
            "val_fraction": 0 < self.val_fraction < 1,
            "warmup": 0 <= self.warmup < 1,
            "alpha": 0 <= self.alpha <= 1,
            "lr": self.lr > 0,
            "temperature": self.temperature > 0,
            "group_size": 1 <= self.group_size <= self.candidates_per_batch,
            "groups_per_batch": self.groups_per_batch >= 2,
            "subspace_k": self.subspace_k >= 1,
            "subspace_ridge": self.subspace_ridge is None or self.subspace_ridge >= 0,
            "kernel_gamma": self.kernel_gamma > 0,
            "kernel_landmarks": self.kernel_landmarks >= 1,
            "subspace_batch": self.subspace_batch >= 2,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise SettingError(name, f"{getattr(self, name)} is out of range: {_RANGES[name]}")
