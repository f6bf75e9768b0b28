"""Attacks on erased pipelines: settings are checked, the search is seeded and lowers its loss, the suite
runner attacks once per prompt and counts the budget apart from the images' UNet rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hubkit.leaderboard.attacks import AttackSpec, attack_prompt
from hubkit.leaderboard.runner import ATTACK_IMAGES, run_suite
from hubkit.leaderboard.suite import SuiteError, load_suite
from hubkit.world import shapes

TINY_ATTACK = Path(__file__).parents[1] / "data" / "tiny-attack-suite.json"


@pytest.fixture(scope="module")
def pipe():
    from hubkit.world.base_model import assemble_pipeline

    pipe = assemble_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def red_circles() -> np.ndarray:
    specs = [shapes.ShapeSpec("circle", "red", "white", "large", seed=s) for s in range(4)]
    return shapes.render_batch(specs, size=32)


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ({"kind": "jailbreak", "steps": 2}, "attack kind must be one of soft-prompt, token"),
        ({"kind": "token", "steps": 0}, "must be > 0"),
        ({"kind": "soft-prompt", "steps": 2, "lr": -1}, "must be > 0"),
        ({"kind": "token", "steps": 2, "budget": 9}, "unknown attack settings \\['budget'\\]"),
        ("token", "'attack' must be an object"),
    ],
)
def test_bad_attack_settings_are_suite_errors(tmp_path: Path, attack, message: str) -> None:
    data = json.loads(TINY_ATTACK.read_text())
    data["groups"]["token"]["attack"] = attack
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SuiteError, match=message):
        load_suite(path, {"concept": "red"})


def test_soft_prompt_attack_is_seeded_and_lowers_the_denoising_loss(pipe, red_circles) -> None:
    spec = AttackSpec(kind="soft-prompt", steps=6, lr=0.01, draws=4)
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    first = attack_prompt(pipe, "a blue circle", red_circles, spec)
    again = attack_prompt(pipe, "a blue circle", red_circles, spec)
    assert torch.equal(first.prompt_embeds, again.prompt_embeds)  # same seed, same search
    assert first.loss_after < first.loss_before  # measured on the same draws
    assert first.call_kwargs(3)["prompt_embeds"].shape == (3, 16, 384)
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags  # frozen while attacking only


def test_token_attack_writes_typeable_words_in_front_of_the_prompt(pipe, red_circles) -> None:
    spec = AttackSpec(kind="token", steps=3, tokens=2, top_k=8, candidates=4, draws=2, seed=1)
    found = attack_prompt(pipe, "a blue circle", red_circles, spec)
    words = found.prompt.split()
    assert words[2:] == ["a", "blue", "circle"] and found.prompt_embeds is None
    ids = pipe.tokenizer(found.prompt, add_special_tokens=False)["input_ids"]
    assert len(ids) == 5  # each adversarial word is one token of the vocabulary, as typed
    assert found.call_kwargs(2) == {"prompt": [found.prompt] * 2}
    assert found.prompt == attack_prompt(pipe, "a blue circle", red_circles, spec).prompt


def test_suite_runner_attacks_each_prompt_once_and_counts_the_budget(pipe) -> None:
    from hubkit.world.judge import load_judge

    suite = load_suite(TINY_ATTACK, {"concept": "red"})
    result = run_suite(pipe, suite, load_judge(), progress=False)
    m = result.metrics
    # soft prompt: the loss before, each step, after (draws rows each); token: before and after, and per
    # step the current words, the gradient pass and each candidate.
    assert m["soft_prompt_unet_evals"] == 2 * (2 + 2)
    assert m["token_unet_evals"] == 2 * (2 + 1 * (2 + 3))
    assert m["unet_evals"] == 2 * 3  # the images' own rows: the attack's are not in them
    assert 0 <= m["soft_prompt_success"] <= 1 and 0 <= m["token_success"] <= 1
    red = [p.text for p in suite.groups["token"]]
    attacks = result.settings["attacks"]
    assert attacks["token"]["steps"] == 1 and set(attacks["token"]["found"]) == set(red)
    for prompt, found in attacks["token"]["found"].items():
        assert (
            found["prompt"].endswith(" " + prompt) and len(found["prompt"].split()) == len(prompt.split()) + 2
        )
    assert all(f["prompt"].startswith("soft prompt from") for f in attacks["soft_prompt"]["found"].values())
    assert len(result.samples) == suite.n_images == 5 + 6 * 2 + 6
    assert ATTACK_IMAGES == 8
    again = run_suite(pipe, suite, load_judge(), progress=False)
    assert again.metrics == m  # seeded: the same attacks, the same images


def test_attacks_on_sdxl_condition_with_the_pooled_embedding_and_both_text_encoders(red_circles):
    """SDXL: the soft prompt optimises the pooled embedding too and draws with it; the token attack's
    gradient flows through both text encoders (one vocabulary)."""
    from hubkit.architectures import build_tiny_pipeline
    from hubkit.leaderboard.attacks import _DenoisingLoss, _one_hot_gradient

    pipe = build_tiny_pipeline("sdxl")
    soft = attack_prompt(pipe, "a red circle", red_circles, AttackSpec("soft-prompt", steps=2, draws=2))
    assert soft.pooled_prompt_embeds is not None and soft.pooled_prompt_embeds.shape == (1, 48)
    kwargs = soft.call_kwargs(2)
    assert kwargs["pooled_prompt_embeds"].shape == (2, 48)
    assert pipe(**kwargs, num_inference_steps=1, output_type="np").images.shape == (2, 128, 128, 3)
    loss = _DenoisingLoss(pipe, red_circles, draws=2, seed=0)
    words = torch.tensor([pipe.tokenizer.convert_tokens_to_ids("blue</w>")])
    embeddings = [pipe.text_encoder.get_input_embeddings(), pipe.text_encoder_2.get_input_embeddings()]
    both = _one_hot_gradient(loss, embeddings, words, "blue a red circle")
    first = _one_hot_gradient(loss, embeddings[:1], words, "blue a red circle")
    assert both.shape == first.shape and not torch.allclose(both, first)
    token = attack_prompt(
        pipe, "a red circle", red_circles, AttackSpec("token", steps=1, draws=2, candidates=2)
    )
    assert token.prompt.endswith(" a red circle") and token.pooled_prompt_embeds is None
