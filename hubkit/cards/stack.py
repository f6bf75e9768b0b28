"""The card of a stack: its base, its components in application order (each pinned), and how to load it."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card

__all__ = ["stack_card"]

_USAGE = """from hubkit.pipelines import load_stack

pipe = load_stack("{repo}")  # {base} at its pinned commit, then every component at its own, in order
# or, on a pipeline of the base you already have: load_stack("{repo}", pipe)
image = pipe("a photo").images[0]"""


def stack_card(info: dict[str, Any], repo_id: str | None = None) -> ModelCard:
    """The adapter card of a stack (``hubkit-method:stack``, a ``stack-component:<method>`` tag per part)."""
    base, components = info["base_model"], info["components"]
    methods = list(dict.fromkeys(c["method"] for c in components))
    rows = "\n".join(
        f"| {n} | [`{c['repo']}`](/{c['repo']}) | `{c['revision'][:12]}` | `{c['method']}` |"
        for n, c in enumerate(components, 1)
    )
    return render_card(
        "adapter",
        method="stack",
        repo_id=repo_id,
        base_model=base,
        architecture=info.get("architecture"),
        adapter_format="stack",
        tags=["stack", *(f"stack-component:{m}" for m in methods)],
        description=(
            f"A stack on [`{base}`](/{base}): {len(components)} hubkit artifacts ({', '.join(methods)}) "
            "applied in order, each pinned to a commit and applied by its own method. This repo holds no "
            "weights, only `hubkit.json` (what to apply, in which order, at which commit)."
        ),
        usage=_USAGE.format(base=base, repo=repo_id or "<namespace>/<stack>"),
        sections={
            "Components": "| order | artifact | commit | method |\n|---|---|---|---|\n" + rows,
        },
        limitations=(
            "Each component was made for the base alone; how well they work together is what the evaluation "
            "measures (each component's own suites run on the stack)."
        ),
    )
