"""``SPMConfig``: what an SPM erases and how it is trained; JSON-serialisable, stored with the artifact."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubkit.config import JSONConfig, erasure_concepts

__all__ = ["DEFAULT_TEMPLATES", "SPMConfig"]

DEFAULT_TEMPLATES = ("{}",)


@dataclass
class SPMConfig(JSONConfig):
    """Settings of one SPM (a rank-1 "semi-permeable membrane" on the UNet's transformer blocks).

    The training defaults are tuned on the reference world (``tiny-sd-shapes``, a 2-core CPU) to erase one
    concept in a few minutes: λ = 1000 (the paper's, tuned for SD 1.4) stopped erasure there, λ = 30 with
    vocabulary anchors kept every other prompt intact. On Stable Diffusion 1.x start from the paper's
    ``steps=3000``, ``lr=1e-4``, ``anchoring_strength=1000``, ``sampling_steps=30`` and a 512 resolution.
    """

    concepts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "A concept to erase (repeatable); permeability compares prompts to these.",
            "cli": "--concept",
        },
    )
    # Each template is paired with the surrogate in the same context, so the erasure direction is the
    # concept's alone.
    templates: list[str] = field(
        default_factory=lambda: list(DEFAULT_TEMPLATES),
        metadata={"help": "Context the concept is trained in, with {} (repeatable).", "cli": "--template"},
    )
    surrogate: str = field(default="", metadata={"help": "What the concepts turn into; '' = unconditional."})
    rank: int = field(default=1, metadata={"help": "Rank of each membrane."})
    alpha: float = field(default=1.0, metadata={"help": "LoRA alpha (scale alpha/rank)."})
    target_blocks: list[str] = field(
        default_factory=lambda: ["Transformer2DModel"],
        metadata={
            "help": "Every Linear/Conv2d inside blocks of this type (isinstance; repeatable).",
            "cli": "--target-block",
        },
    )
    erasing_scale: float = field(
        default=1.0, metadata={"help": "η: the target is ε(c_sur) − η·(ε(c_tar) − ε(c_sur))."}
    )
    anchoring_strength: float = field(
        default=30.0, metadata={"help": "λ of the latent-anchoring loss; 0 trains without it (ablation)."}
    )
    anchors_per_step: int = field(
        default=4, metadata={"help": "Random text-embedding anchors per step, plus the empty prompt."}
    )
    # "gaussian": the official random directions scaled to the target's norm; "vocabulary": prompts of random
    # vocabulary words run through the text encoder (on the encoder's manifold; both data-free).
    # Concepts the erasure must not touch (e.g. purple when erasing red: purple's red component goes with it
    # otherwise); each is anchored, in every template, on every step.
    preserve: list[str] = field(
        default_factory=list,
        metadata={"help": "A concept to keep intact, anchored every step (repeatable).", "cli": "--preserve"},
    )
    anchor_source: str = field(
        default="vocabulary",
        metadata={"help": "Where anchors come from.", "choices": ("vocabulary", "gaussian")},
    )
    steps: int = field(default=600, metadata={"help": "Training steps."})
    batch_size: int = field(default=4, metadata={"help": "x_t samples per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Batches whose gradients add up before each optimizer step."}
    )
    lr: float = field(default=1e-2, metadata={"help": "Learning rate (AdamW, cosine schedule)."})
    warmup_steps: int = field(default=20, metadata={"help": "Warm-up steps of the learning rate."})
    sampling_steps: int = field(
        default=10, metadata={"help": "DDIM steps of the schedule on which x_t is sampled."}
    )
    sampling_guidance: float = field(
        default=3.0, metadata={"help": "CFG scale while sampling x_t (with the SPM on)."}
    )
    resolution: int | None = field(
        default=None, metadata={"help": "Pixels; default: the base UNet's native size."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def __post_init__(self) -> None:
        self.concepts, self.preserve = erasure_concepts(self.concepts, self.preserve, "an SPM")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"every template must contain '{{}}' for the concept (got {self.templates!r})")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.steps < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("steps, batch_size and gradient_accumulation_steps must be >= 1")
        if self.sampling_steps < 2:
            raise ValueError(f"sampling_steps must be >= 2, got {self.sampling_steps}")
        if self.anchor_source not in ("gaussian", "vocabulary"):
            raise ValueError(f"anchor_source must be 'gaussian' or 'vocabulary', got {self.anchor_source!r}")
        if self.anchoring_strength < 0 or self.anchors_per_step < 0:
            raise ValueError("anchoring_strength and anchors_per_step must be >= 0")
        if self.preserve and self.anchoring_strength == 0:
            raise ValueError("preserve needs latent anchoring (anchoring_strength > 0)")
