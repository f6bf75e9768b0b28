"""Standard cards for every hubkit artifact: schema per kind, Jinja rendering, offline validation.

>>> from hubkit.cards import render_card, validate_card
>>> card = render_card("adapter", method="spm", base_model="hubkit/tiny-sd-shapes", repo_id="me/spm-red")
>>> validate_card(card)
[]
"""

from hubkit.cards.render import default_tags, render_card, template_text
from hubkit.cards.schema import (
    HUBKIT_KIND_TAG_PREFIX,
    HUBKIT_METHOD_TAG_PREFIX,
    HUBKIT_TAG,
    SCHEMAS,
    ArtifactKind,
    CardError,
    CardProblem,
    KindSchema,
    schema_for,
)
from hubkit.cards.validate import (
    CardReport,
    check_card_source,
    check_folder,
    infer_kind,
    inspect_card,
    inspect_card_source,
    inspect_folder,
    validate_card,
)

__all__ = [
    "HUBKIT_KIND_TAG_PREFIX",
    "HUBKIT_METHOD_TAG_PREFIX",
    "HUBKIT_TAG",
    "SCHEMAS",
    "ArtifactKind",
    "CardError",
    "CardProblem",
    "CardReport",
    "KindSchema",
    "check_card_source",
    "check_folder",
    "default_tags",
    "infer_kind",
    "inspect_card",
    "inspect_card_source",
    "inspect_folder",
    "render_card",
    "schema_for",
    "template_text",
    "validate_card",
]
