"""RECE's closed forms on the tiny UNet's own cross-attention projections: the edit maps the concept onto the
surrogate and keeps what it must preserve, the regenerating embedding undoes a weak edit, the LoRA export is
exact at the rank the edit has."""

from __future__ import annotations

import pytest
import torch
from hubkit.adapters.rece import (
    RECEError,
    closed_form_edit,
    cross_attention_projections,
    delta_to_lora,
    regenerating_embedding,
)
from torch import nn


@pytest.fixture(scope="module")
def projections():
    from hubkit.world.base_model import assemble_pipeline

    return cross_attention_projections(assemble_pipeline().unet)


def _embeddings(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_only_cross_attention_keys_and_values_are_edited(projections):
    assert projections and all(p.endswith(("attn2.to_k", "attn2.to_v")) for p in projections)
    assert len({p.rsplit(".", 1)[0] for p in projections}) * 2 == len(projections)
    with pytest.raises(RECEError, match="no cross-attention"):
        cross_attention_projections(nn.Sequential(nn.Linear(4, 4)))


def test_edit_maps_the_concept_to_the_surrogate_and_preserves_the_rest(projections):
    w = next(iter(projections.values())).weight.detach()
    d = w.shape[1]
    concept, surrogate = _embeddings(3, d, 0), _embeddings(3, d, 1)
    preserve = _embeddings(40, d, 2)
    edited = closed_form_edit(w, concept, surrogate, preserve, preserve_scale=10.0, ridge=1e-3)
    target, before = surrogate @ w.T, concept @ w.T
    moved = float((concept @ edited.T - target).norm() / (before - target).norm())
    assert moved < 1e-3  # the concept now reads as the surrogate
    kept = float((preserve @ edited.T - preserve @ w.T).norm() / (preserve @ w.T).norm())
    assert kept < 1e-3
    unrelated = _embeddings(20, d, 3)  # directions no row constrains stay as they were
    drift = float((unrelated @ (edited - w).T).norm() / (unrelated @ w.T).norm())
    assert drift < 0.5
    assert torch.linalg.matrix_rank((edited - w).double(), rtol=1e-6) <= 3  # rank ≤ erased rows


def test_regenerating_embedding_finds_the_concept_again_on_a_weak_edit(projections):
    key, value = [p.weight.detach() for p in list(projections.values())[:2]]
    d = key.shape[1]
    concept, surrogate, preserve = _embeddings(1, d, 4), _embeddings(1, d, 5), _embeddings(30, d, 6)
    edited = [closed_form_edit(w, concept, surrogate, preserve, ridge=1e-3) for w in (key, value)]
    found = regenerating_embedding(edited, [key, value], concept, ridge=1e-4)

    def miss(e):  # how far e's keys and values on the edited model are from the concept's on the original
        return sum(float((e @ a.T - concept @ b.T).norm()) for a, b in zip(edited, (key, value), strict=True))

    assert found.shape == concept.shape
    assert miss(found) < 0.5 * miss(concept)  # the edit is undone by another input: RECE erases that too
    again = [
        closed_form_edit(
            w, torch.cat([concept, found]), torch.cat([surrogate, surrogate]), preserve, ridge=1e-3
        )
        for w in (key, value)
    ]
    after = sum(float((found @ a.T - concept @ b.T).norm()) for a, b in zip(again, (key, value), strict=True))
    assert after > 2 * miss(found)  # once erased as well, it no longer regenerates the concept


def test_delta_exports_exactly_as_a_lora_of_the_edit_rank(projections):
    w = next(iter(projections.values())).weight.detach()
    d = w.shape[1]
    edited = closed_form_edit(w, _embeddings(2, d, 7), _embeddings(2, d, 8), _embeddings(10, d, 9))
    delta = edited - w
    down, up = delta_to_lora(delta)
    assert down.shape == (2, d) and up.shape == (w.shape[0], 2)  # two erased rows: rank 2
    assert torch.allclose(up @ down, delta, atol=1e-6 * float(delta.abs().max()) + 1e-7)
    with pytest.raises(RECEError, match="changes nothing"):
        delta_to_lora(torch.zeros(4, 4))


def test_bad_embeddings_are_clear_errors(projections):
    w = next(iter(projections.values())).weight.detach()
    d = w.shape[1]
    with pytest.raises(RECEError, match=f"the projection reads {d}"):
        closed_form_edit(w, torch.randn(1, d + 1), torch.randn(1, d + 1), torch.randn(2, d))
    with pytest.raises(RECEError, match="as many surrogate rows"):
        closed_form_edit(w, torch.randn(2, d), torch.randn(1, d), torch.randn(2, d))
    with pytest.raises(RECEError, match="nothing to erase"):
        closed_form_edit(w, torch.zeros(0, d), torch.zeros(0, d), torch.randn(2, d))
    with pytest.raises(RECEError, match="ridge > 0"):
        closed_form_edit(w, torch.randn(1, d), torch.randn(1, d), torch.zeros(0, d), ridge=0.0)


def test_erasing_red_on_the_tiny_pipeline_keeps_the_shapes_and_the_other_colours():
    import numpy as np
    from hubkit.adapters.rece import aligned_rows, erase

    from hubkit.world.base_model import assemble_pipeline
    from hubkit.world.judge import load_judge
    from hubkit.world.shapes import SHAPES, trained_pairs

    pipe, judge = assemble_pipeline(), load_judge()
    pipe.set_progress_bar_config(disable=True)
    red, gray = [f"a red {s}" for s in SHAPES], [f"a gray {s}" for s in SHAPES]
    others = [
        f"a {c} {s}"
        for c, s in zip(("green", "blue", "yellow", "purple", "orange", "cyan"), SHAPES, strict=True)
    ]

    def labels(prompts):
        g = [torch.Generator().manual_seed(0) for _ in prompts]
        images = pipe(prompts, num_inference_steps=20, generator=g, output_type="np").images
        return judge.predict((np.asarray(images) * 255).round().astype(np.uint8))

    preserve = [f"a {c} {s}" for s, c in trained_pairs() if c != "red"]
    deltas = erase(pipe, red, gray, preserve, rounds=1)
    projections = cross_attention_projections(pipe.unet)
    assert set(deltas) == set(projections)
    before, kept_before = labels(red), labels(others)
    with torch.no_grad():
        for path, module in projections.items():
            module.weight += deltas[path]
    after, kept = labels(red), labels(others)
    assert before["colour"].count("red") >= 5 and after["colour"].count("red") == 0
    assert sum(a == b for a, b in zip(after["shape"], SHAPES, strict=True)) >= 4  # the shapes stay
    right = [
        sum(c == p.split()[1] for c, p in zip(k["colour"], others, strict=True)) for k in (kept_before, kept)
    ]
    assert right[1] >= right[0] - 1, (kept_before, kept)  # other colours stay (at most one image changes)
    with pytest.raises(RECEError, match="the concept itself"):
        aligned_rows(pipe, ["a red circle"], ["a red circle"])


def test_prompts_of_other_lengths_align_from_their_last_word_and_bad_concepts_are_refused():
    from hubkit.adapters.rece import RECEConfig, aligned_rows, check_vocabulary, context_templates, erase

    from hubkit.world.base_model import assemble_pipeline

    pipe = assemble_pipeline()
    same, surrogate = aligned_rows(pipe, ["a red circle"], ["a gray circle"])
    assert same.shape == surrogate.shape == (16, 384)  # every position of the padded sequence
    # [CLS] a red circle [SEP] vs [CLS] a circle [SEP]: from "circle" (position 3 / 2) to the end, 13 rows
    erase_rows, target_rows = aligned_rows(pipe, ["a red circle"], ["a circle"])
    encoded = pipe.encode_prompt(["a red circle", "a circle"], "cpu", 1, False)[0]
    assert torch.equal(erase_rows, encoded[0, 3:16]) and torch.equal(target_rows, encoded[1, 2:15])
    empty = aligned_rows(pipe, ["red"], [""])[1]  # "" is [CLS] [SEP]: from [CLS]
    assert torch.equal(empty, pipe.encode_prompt([""], "cpu", 1, False)[0][0, 0:15])

    check_vocabulary(pipe, ["red", "dark red"])
    with pytest.raises(RECEError, match="'blorptastic' is not in the text encoder's vocabulary"):
        check_vocabulary(pipe, ["blorptastic"])
    with pytest.raises(ValueError, match="surrogate 'red' is a concept to erase"):
        RECEConfig(concepts=["red"], surrogate="red")
    with pytest.raises(ValueError, match="at least one non-empty concept"):
        RECEConfig(concepts=[" "])
    with pytest.raises(ValueError, match="must contain"):
        RECEConfig(concepts=["red"], templates=["a circle"])

    templates = context_templates(pipe, ["a {} circle"], 3, seed=0, exclude=["red"])
    assert templates[0] == "a {} circle" and len(templates) == 4
    assert all(t.endswith(" a {} circle") and 1 <= len(t.split()) - 3 <= 3 for t in templates[1:])
    assert templates == context_templates(pipe, ["a {} circle"], 3, seed=0, exclude=["red"])
    assert "red" not in " ".join(templates[1:]).split()

    from diffusers import UNet2DConditionModel

    pipe.unet = UNet2DConditionModel(  # a UNet with no cross-attention anywhere
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32,),
        layers_per_block=1,
        down_block_types=("DownBlock2D",),
        up_block_types=("UpBlock2D",),
        mid_block_type=None,
        norm_num_groups=8,
        cross_attention_dim=384,
    )
    with pytest.raises(RECEError, match="has no cross-attention"):
        erase(pipe, ["a red circle"], ["a gray circle"], [])


def test_clip_prompts_are_not_refused_as_unknown_but_unknown_words_still_are():
    """CLIP's unknown token is its end-of-text token, in every tokenization: only the words' own tokens
    count. On the world's BERT tokenizer a word it cannot read is still refused."""
    from hubkit.adapters.rece import aligned_rows

    from hubkit.architectures import build_tiny_pipeline
    from hubkit.world.base_model import assemble_pipeline

    sd15 = build_tiny_pipeline("sd15")
    assert sd15.tokenizer.unk_token_id == sd15.tokenizer.eos_token_id
    erase_rows, target_rows = aligned_rows(sd15, ["a red circle"], ["a gray circle"])
    assert erase_rows.shape == target_rows.shape == (77, 32)
    world = assemble_pipeline()
    with pytest.raises(RECEError, match="vocabulary does not know"):
        aligned_rows(world, ["a \u2603 circle"], ["a gray circle"])


def test_sdxl_rows_are_both_encoders_states_and_its_pooled_path_is_edited_too():
    from hubkit.adapters.rece import erase, prompt_rows

    from hubkit.architectures import build_tiny_pipeline
    from hubkit.conditioning import encode

    pipe = build_tiny_pipeline("sdxl")
    states = []
    with torch.no_grad():
        for tokenizer, encoder in (
            (pipe.tokenizer, pipe.text_encoder),
            (pipe.tokenizer_2, pipe.text_encoder_2),
        ):
            ids = tokenizer(
                ["a red circle"], padding="max_length", max_length=77, truncation=True, return_tensors="pt"
            ).input_ids
            states.append(encoder(ids, output_hidden_states=True).hidden_states[-2])
    # the cross-attention input: both encoders' penultimate states side by side, every position
    assert torch.equal(prompt_rows(pipe, ["a red circle"]), torch.cat(states, dim=-1))

    deltas = erase(pipe, ["a red circle"], ["a gray circle"], ["a blue circle"], rounds=1)
    assert set(deltas) == {*cross_attention_projections(pipe.unet), "add_embedding.linear_1"}
    layer, columns = pipe.unet.add_embedding.linear_1, pipe.text_encoder_2.config.projection_dim
    delta = deltas["add_embedding.linear_1"]
    assert delta.shape == layer.weight.shape
    assert delta[:, :columns].abs().max() > 0 and not delta[:, columns:].any()  # time-id columns untouched
    with torch.no_grad():
        red, gray, blue = encode(pipe, ["a red circle", "a gray circle", "a blue circle"]).pooled
    w = layer.weight[:, :columns].detach()
    edited = w + delta[:, :columns]
    assert (edited @ red - w @ gray).norm() < 0.2 * (
        w @ red - w @ gray
    ).norm()  # red's pooled reads as gray's
    assert (edited @ blue - w @ blue).norm() < 0.2 * (w @ red - w @ gray).norm()  # blue's is kept
