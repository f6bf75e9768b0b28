"""``RECEConfig``: what a closed-form erasure erases, into what, and what it keeps (stored with it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubkit.config import JSONConfig, erasure_concepts

__all__ = ["RECEConfig"]


@dataclass
class RECEConfig(JSONConfig):
    """Settings of one RECE edit (UCE's closed form on the cross-attention key/value projections, then
    ``rounds`` of RECE: the embedding that regenerates the concept on the edited model, erased too).

    Every concept and every preserved concept is put into every template; a concept's prompt is mapped onto
    the surrogate's prompt in the same template. Defaults: UCE's (surrogate ``""``: the concept turns into
    the unconditional prompt; ridge 0.1) and RECE's regenerating rounds. On Stable Diffusion 1.x use
    templates such as ``"{}"`` / ``"a photo of {}"`` and a preservation list of a few hundred other concepts
    (UCE's recipe for styles and objects).
    """

    concepts: list[str] = field(
        default_factory=list,
        metadata={"help": "A concept to erase (repeatable).", "cli": "--concept"},
    )
    surrogate: str = field(
        default="", metadata={"help": "What the concepts turn into; '' = the empty prompt (UCE's default)."}
    )
    templates: list[str] = field(
        default_factory=lambda: ["{}"],
        metadata={"help": "A context for every concept, with {} (repeatable).", "cli": "--template"},
    )
    preserve: list[str] = field(
        default_factory=list,
        metadata={
            "help": "A concept whose outputs are kept, in every template (repeatable).",
            "cli": "--preserve",
        },
    )
    contexts: int = field(
        default=8,
        metadata={
            "help": "Random-word contexts per template: each template also gets 1-3 vocabulary words in "
            "front, so the edit covers the concept in contexts no template names (data-free, 0: none)."
        },
    )
    rounds: int = field(
        default=2, metadata={"help": "RECE rounds: regenerating embeddings found and erased (0 = UCE)."}
    )
    preserve_scale: float = field(
        default=1.0, metadata={"help": "Weight of the preserved concepts' outputs in the edit (UCE's λ)."}
    )
    ridge: float = field(
        default=0.1, metadata={"help": "Keeps directions no prompt constrains as they were (UCE's γ)."}
    )

    seed: int = field(default=0, metadata={"help": "Seed of the random-word contexts."})
    allow_unknown_words: bool = field(
        default=False,
        metadata={
            "help": "Erase concepts whose words the tokenizer only spells in pieces (e.g. rare names); off: "
            "such a word is refused as a likely typo."
        },
    )

    def __post_init__(self) -> None:
        self.concepts, self.preserve = erasure_concepts(self.concepts, self.preserve, "RECE")
        self.surrogate = self.surrogate.strip()
        if self.surrogate in self.concepts:
            raise ValueError(f"the surrogate {self.surrogate!r} is a concept to erase: nothing would change")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"every template must contain '{{}}' for the concept (got {self.templates!r})")
        if self.rounds < 0 or self.contexts < 0:
            raise ValueError(f"rounds and contexts must be >= 0, got {self.rounds} and {self.contexts}")
        if self.preserve_scale < 0 or self.ridge < 0:
            raise ValueError("preserve_scale and ridge must be >= 0")
        if self.ridge == 0 and not self.preserve:
            raise ValueError("with no preserved concepts the edit needs ridge > 0 to be determined")

    def prompts(self, templates: list[str] | None = None) -> tuple[list[str], list[str], list[str]]:
        """(concept prompts, their surrogate prompts, preserved prompts): each concept in each template
        (``templates``: the config's, or those with their random contexts)."""
        templates = templates or self.templates
        concept = [t.format(c) for c in self.concepts for t in templates]
        surrogate = [" ".join(t.format(self.surrogate).split()) for _ in self.concepts for t in templates]
        preserve = [t.format(c) for c in self.preserve for t in templates]
        return concept, surrogate, preserve
