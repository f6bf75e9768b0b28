"""``hubkit export --merged``: an artifact fused into its base, saved as a plain diffusers pipeline folder.

Whatever the method, the result loads with stock ``DiffusionPipeline.from_pretrained`` and no hubkit: the
method fuses its update (:meth:`hubkit.methods.Method.merged`), the pipeline is saved with
``save_pretrained`` and gets a card (``base_model_relation: finetune``, the artifact it came from). The
folder is written whole or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hubkit.methods import MethodError, method_for

__all__ = ["export_merged"]


def export_merged(
    source: str,
    out: str | os.PathLike[str],
    *,
    base: str | None = None,
    revision: str | None = None,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """Fuse the artifact ``source`` (folder or repo id) into its base model; save the pipeline to ``out``."""
    from huggingface_hub import HfApi

    from hubkit.files import atomic_folder
    from hubkit.hub import HubError, pull_pipeline
    from hubkit.hub.endpoint import resolve_endpoint, resolve_token
    from hubkit.leaderboard.evaluation import fetch_artifact, is_local

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise MethodError(f"{out} exists and is not empty (pass --force to replace it)")
    api = None
    if not is_local(source):
        hub = resolve_endpoint(endpoint)
        api = HfApi(endpoint=hub.url, token=resolve_token(token, hub))
    artifact = fetch_artifact(source, api=api, revision=revision)

    def hub_api() -> HfApi:  # where a method pulls more from (a stack's components)
        hub = resolve_endpoint(endpoint)
        return HfApi(endpoint=hub.url, token=resolve_token(token, hub))

    artifact.hub_api = hub_api
    method = method_for(artifact)
    if not method.needs_base:
        raise MethodError(f"{source} is already a whole pipeline: nothing to merge")
    base_id = base or artifact.base_model
    if not base_id:
        raise MethodError(f"{source} names no base_model in its card: pass --base")
    try:
        pipe = method.merged(artifact, pull_pipeline(base_id, endpoint=endpoint, token=token))
    except HubError as err:
        raise MethodError(str(err)) from err

    def fill(folder: Path) -> None:
        pipe.save_pretrained(folder, safe_serialization=True)
        info = {"merged_from": {"source": source, "revision": artifact.revision, "method": method.name}}
        (folder / "hubkit.json").write_text(json.dumps({**info, "base_model": base_id}, indent=2) + "\n")
        _card(artifact, method.name, base_id, _architecture(pipe)).save(str(folder / "README.md"))

    return atomic_folder(out, fill, force=True)


def _architecture(pipe: Any) -> str | None:
    from hubkit.architectures import architecture_of

    try:
        return architecture_of(pipe)
    except ValueError:  # no Stable Diffusion UNet: the card names no family
        return None


def _card(artifact: Any, method: str, base_id: str, architecture: str | None = None):
    from hubkit.cards import render_card

    source = artifact.repo_id or artifact.source
    return render_card(
        "pipeline",
        method=method,
        base_model=base_id,
        base_model_relation="finetune",
        architecture=architecture,
        title=f"{Path(str(source)).name} (merged)",
        description=(
            f"[`{base_id}`](/{base_id}) with the {method} artifact `{source}` fused into its weights by "
            "`hubkit export --merged`: a plain diffusers pipeline, loaded with stock "
            "`DiffusionPipeline.from_pretrained`, no hubkit needed."
        ),
        tags=["merged"],
    )
