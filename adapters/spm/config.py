"""``SPMConfig``: what an SPM erases and how it is trained; JSON-serialisable, stored with the artifact."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubkit.training import JSONConfig

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

    concepts: list[str] = field(default_factory=list)  # what to erase; permeability compares prompts to these
    # Contexts the concepts are trained in ("{}" = the concept alone, as the paper); each is paired with the
    # surrogate in the same context, so the erasure direction is the concept's alone.
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    surrogate: str = ""  # what the concepts are pushed towards; "" = the unconditional prediction
    rank: int = 1
    alpha: float = 1.0
    # Every Linear/Conv2d inside a block of these types (matched with isinstance, not by class name).
    target_blocks: list[str] = field(default_factory=lambda: ["Transformer2DModel"])
    erasing_scale: float = 1.0  # η: the target is ε(c_sur) − η·(ε(c_tar) − ε(c_sur))
    anchoring_strength: float = 30.0  # λ of the latent-anchoring loss; 0 trains without it (ablation)
    anchors_per_step: int = 4  # random text-embedding anchors per step, plus the empty prompt
    # "gaussian": the official random directions scaled to the target's norm; "vocabulary": prompts of random
    # vocabulary words run through the text encoder (on the encoder's manifold; both data-free).
    anchor_source: str = "vocabulary"
    steps: int = 600
    batch_size: int = 4  # x_t samples per step
    lr: float = 1e-2
    warmup_steps: int = 20
    sampling_steps: int = 10  # DDIM steps of the schedule on which x_t is sampled
    sampling_guidance: float = 3.0  # CFG scale while sampling x_t (with the SPM on)
    resolution: int | None = None  # pixels; None = the base UNet's native size
    seed: int = 0

    def __post_init__(self) -> None:
        self.concepts = [c.strip() for c in self.concepts]
        if not self.concepts or any(not c for c in self.concepts):
            raise ValueError(f"an SPM needs at least one non-empty concept to erase (got {self.concepts!r})")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"every template must contain '{{}}' for the concept (got {self.templates!r})")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.steps < 1 or self.batch_size < 1 or self.sampling_steps < 2:
            raise ValueError("steps, batch_size must be >= 1 and sampling_steps >= 2")
        if self.anchor_source not in ("gaussian", "vocabulary"):
            raise ValueError(f"anchor_source must be 'gaussian' or 'vocabulary', got {self.anchor_source!r}")
        if self.anchoring_strength < 0 or self.anchors_per_step < 0:
            raise ValueError("anchoring_strength and anchors_per_step must be >= 0")
