"""Standard cards: rendering per kind, offline validation (every problem at once), folder/repo checks, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from huggingface_hub import DatasetCard, EvalResult, ModelCard, SpaceCard
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.repocard_data import model_index_to_eval_results
from typer.testing import CliRunner

from hubkit.cards import (
    SCHEMAS,
    ArtifactKind,
    CardError,
    CardProblem,
    check_card_source,
    check_folder,
    infer_kind,
    inspect_card,
    render_card,
    template_text,
    validate_card,
)
from hubkit.cards import validate as validate_module
from hubkit.cards.cli import card_app

BASE = "hubkit/tiny-sd-shapes"

# Minimal arguments that make a valid card of each kind.
MINIMAL: dict[ArtifactKind, dict[str, Any]] = {
    ArtifactKind.ADAPTER: {"method": "spm", "base_model": BASE, "repo_id": "alice/spm-red"},
    ArtifactKind.QUANTIZED: {"method": "ptq", "base_model": BASE, "repo_id": "alice/tiny-w8a8"},
    ArtifactKind.PIPELINE: {"repo_id": BASE},
    ArtifactKind.DATASET: {"repo_id": "hubkit/shapes"},
    ArtifactKind.METRIC: {"repo_id": "hubkit/judge_accuracy"},
    ArtifactKind.SPACE: {"repo_id": "hubkit/spm-demo", "method": "spm", "models": [BASE]},
}
CARD_CLASS = {"model": ModelCard, "dataset": DatasetCard, "space": SpaceCard}


def front_matter(card: Any) -> dict[str, Any]:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def make_card(meta: dict[str, Any] | None, body: str = "\n# A card\n\nSome text.\n") -> str:
    if meta is None:
        return body
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body


def valid_adapter_meta() -> dict[str, Any]:
    return front_matter(render_card("adapter", **MINIMAL[ArtifactKind.ADAPTER]))


def fields(problems: list[CardProblem]) -> set[str]:
    return {problem.field for problem in problems}


# ------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("kind", list(ArtifactKind))
def test_every_kind_renders_a_card_that_validates(kind: ArtifactKind) -> None:
    card = render_card(kind, **MINIMAL[kind])
    assert isinstance(card, CARD_CLASS[kind.repo_type])
    assert validate_card(card) == []
    assert validate_card(str(card), kind, repo_type=kind.repo_type) == []
    report = inspect_card(str(card))
    assert report.kind is kind and report.ok
    meta = front_matter(card)
    for key in SCHEMAS[kind].required:
        assert meta.get(key), f"{key} missing from a rendered {kind.value} card"
    assert "hubkit" in meta["tags"]
    assert f"hubkit-kind:{kind.value}" in meta["tags"]
    assert meta["license"] == "apache-2.0"
    assert "{{" not in str(card) and "None" not in card.text


def test_templates_ship_for_every_kind() -> None:
    for kind in ArtifactKind:
        assert template_text(kind).startswith("---\n{{ card_data }}\n---")


def test_lora_adapter_front_matter_and_usage() -> None:
    card = render_card(
        "adapter", method="spm", base_model=BASE, repo_id="alice/spm-red", tags=["concept-erasure", "hubkit"]
    )
    meta = front_matter(card)
    assert meta["library_name"] == "diffusers"
    assert meta["pipeline_tag"] == "text-to-image"
    assert meta["base_model"] == BASE
    assert meta["base_model_relation"] == "adapter"
    assert meta["tags"][:3] == ["hubkit", "hubkit-kind:adapter", "hubkit-method:spm"]
    assert {"lora", f"base_model:adapter:{BASE}", "concept-erasure", "text-to-image"} <= set(meta["tags"])
    assert len(meta["tags"]) == len(set(meta["tags"]))
    assert 'pipe.load_lora_weights("alice/spm-red")' in card.text
    assert f'DiffusionPipeline.from_pretrained("{BASE}")' in card.text
    assert "model-index" not in meta and "## Evaluation" not in card.text


def test_peft_adapter_uses_peft_library_and_loader() -> None:
    card = render_card("adapter", method="sara", base_model=BASE, repo_id="alice/sara", adapter_format="peft")
    meta = front_matter(card)
    assert meta["library_name"] == "peft"
    assert "lora" not in meta["tags"]
    assert f"base_model:adapter:{BASE}" in meta["tags"]
    assert 'PeftModel.from_pretrained(pipe.unet, "alice/sara")' in card.text


def test_sampling_settings_reach_the_snippet_and_a_table() -> None:
    sampling = {"scheduler": "LCMScheduler", "num_inference_steps": 4, "guidance_scale": 1.0}
    card = render_card("adapter", method="lcm-lora", base_model=BASE, repo_id="alice/lcm", sampling=sampling)
    assert "from diffusers import DiffusionPipeline, LCMScheduler" in card.text
    assert "pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)" in card.text
    assert "num_inference_steps=4, guidance_scale=1.0" in card.text
    assert "| num_inference_steps | `4` |" in card.text


def test_quantized_and_pipeline_relations() -> None:
    quantized = front_matter(
        render_card("quantized", method="ptq", base_model=BASE, quantization={"scheme": "W8A8"})
    )
    assert quantized["base_model_relation"] == "quantized"
    assert "hubkit-method:ptq" in quantized["tags"]
    base = front_matter(render_card("pipeline", repo_id=BASE))
    assert "base_model" not in base and "base_model_relation" not in base
    finetune = front_matter(render_card("pipeline", base_model=BASE, method="sara"))
    assert finetune["base_model_relation"] == "finetune"
    merge = front_matter(render_card("pipeline", base_model=[BASE, "alice/other"]))
    assert merge["base_model_relation"] == "merge"


def test_space_and_metric_front_matter() -> None:
    space = front_matter(render_card("space", **MINIMAL[ArtifactKind.SPACE], sdk_version="5.0.0"))
    assert space["sdk"] == "gradio" and space["app_file"] == "app.py" and space["sdk_version"] == "5.0.0"
    assert space["title"] == "spm-demo" and space["emoji"] and space["colorFrom"] and space["colorTo"]
    assert space["models"] == [BASE] and space["pinned"] is False
    assert "library_name" not in space and "pipeline_tag" not in space
    metric = front_matter(render_card("metric", repo_id="hubkit/judge_accuracy"))
    assert {"hubkit", "evaluate", "metric"} <= set(metric["tags"])
    assert "library_name" not in metric
    dataset = front_matter(
        render_card("dataset", repo_id="hubkit/shapes", metadata={"task_categories": ["text-to-image"]})
    )
    assert dataset["task_categories"] == ["text-to-image"] and dataset["pretty_name"] == "shapes"


def test_render_refuses_a_card_that_would_not_validate() -> None:
    with pytest.raises(CardError) as err:
        render_card("adapter", repo_id="alice/x")
    assert fields(err.value.problems) == {"base_model", "tags"}
    assert "base_model: missing (required for adapter cards)" in str(err.value)
    with pytest.raises(ValueError, match="unknown artifact kind"):
        render_card("lora")
    with pytest.raises(ValueError, match="adapter_format"):
        render_card("adapter", method="spm", base_model=BASE, adapter_format="safetensors")


def test_the_base_architecture_is_a_field_and_a_tag_that_agree(tmp_path: Path) -> None:
    """``base_architecture`` + ``base-architecture:<family>``: rendered together, optional (older cards have
    neither), refused when unknown, half-written or contradicting, and only on model cards."""
    meta = front_matter(render_card("adapter", **MINIMAL[ArtifactKind.ADAPTER], architecture="sdxl"))
    assert meta["base_architecture"] == "sdxl" and "base-architecture:sdxl" in meta["tags"]
    assert list(meta).index("base_architecture") == list(meta).index("base_model_relation") + 1
    assert validate_card(make_card(meta)) == []
    assert "base_architecture" not in valid_adapter_meta()  # optional: older cards still validate

    def problems(**changes: Any) -> list[str]:
        return [str(p) for p in validate_card(make_card({**meta, **changes}))]

    tags = [t for t in meta["tags"] if not t.startswith("base-architecture:")]
    assert problems(base_architecture="sd3") == [
        "base_architecture: 'sd3' is not an architecture hubkit knows; expected one of sd1, sd2, sdxl"
    ]
    assert problems(tags=tags) == ["tags: missing 'base-architecture:sdxl' (base_architecture is 'sdxl')"]
    assert problems(tags=[*tags, "base-architecture:sd1"]) == [
        "tags: 'base-architecture:sd1' does not match base_architecture 'sdxl'"
    ]
    assert problems(base_architecture=None) == [
        "base_architecture: missing (the card is tagged 'base-architecture:sdxl')"
    ]
    assert problems(base_architecture=2) == [
        "base_architecture: must be a string (quote it in YAML), got int 2"
    ]
    with pytest.raises(CardError, match="only model cards name a base architecture, not dataset"):
        render_card("dataset", repo_id="hubkit/shapes", architecture="sd1")

    runner = CliRunner()
    (tmp_path / "README.md").write_text(make_card({**meta, "base_architecture": "sd3"}))
    result = runner.invoke(card_app, ["check", str(tmp_path)])
    assert result.exit_code == 1 and "'sd3' is not an architecture hubkit knows" in result.stdout
    (tmp_path / "README.md").write_text(make_card(meta))
    assert runner.invoke(card_app, ["check", str(tmp_path)]).stdout.strip() == "card OK (adapter)"


# ------------------------------------------------------------------------------------------ model-index


def test_model_index_round_trip() -> None:
    results = [
        EvalResult(
            task_type="text-to-image",
            dataset_type="hubkit/shapes",
            dataset_name="shapes",
            dataset_split="test",
            metric_type="judge_accuracy",
            metric_name="judge accuracy",
            metric_value=0.91,
            source_name="hubkit leaderboard",
            source_url="/spaces/hubkit/leaderboard",
        ),
        EvalResult(
            task_type="text-to-image",
            dataset_type="hubkit/shapes",
            dataset_name="shapes",
            dataset_split="test",
            metric_type="fid",
            metric_value=12.5,
            source_name="hubkit leaderboard",
            source_url="/spaces/hubkit/leaderboard",
        ),
    ]
    card = render_card("adapter", **MINIMAL[ArtifactKind.ADAPTER], eval_results=results)
    meta = front_matter(card)
    name, parsed = model_index_to_eval_results(meta["model-index"])
    assert name == "spm-red"
    assert parsed == results
    reloaded = ModelCard(str(card))
    assert reloaded.data.eval_results == results
    assert validate_card(reloaded) == []
    assert "## Evaluation" in card.text and "| judge accuracy | 0.91 | shapes | test |" in card.text


# ------------------------------------------------------------------------------------------ validation


def _mutated(**changes: Any) -> dict[str, Any]:
    meta = valid_adapter_meta()
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return meta


ADAPTER_TAGS = ["hubkit", "hubkit-kind:adapter", "hubkit-method:spm", "lora", f"base_model:adapter:{BASE}"]

# (card text, kind, repo_type, expected field, words the message must contain)
PROBLEM_CASES = [
    ("# no front matter\n", None, None, "yaml", "no front matter"),
    ("---\nlicense: [mit\n---\n# x\n", None, None, "yaml", "not valid YAML at line 2"),
    ("---\n- a\n- b\n---\n# x\n", None, None, "yaml", "must be a mapping"),
    (
        make_card(_mutated(base_model=None)),
        "adapter",
        None,
        "base_model",
        "missing (required for adapter cards)",
    ),
    (make_card(_mutated(library_name=None)), "adapter", None, "library_name", "missing"),
    (make_card(_mutated(license=None)), "adapter", None, "license", "missing"),
    (make_card(_mutated(pipeline_tag="text-generation")), None, None, "pipeline_tag", "expected one of"),
    (
        make_card(_mutated(base_model_relation="derived")),
        "adapter",
        None,
        "base_model_relation",
        "not a relation",
    ),
    (
        make_card(_mutated(base_model_relation="finetune")),
        "adapter",
        None,
        "base_model_relation",
        "'adapter'",
    ),
    (
        make_card(_mutated(base_model_relation=None)),
        "adapter",
        None,
        "base_model_relation",
        "set it to 'adapter'",
    ),
    (make_card(_mutated(tags=ADAPTER_TAGS[1:])), None, None, "tags", "missing 'hubkit'"),
    (
        make_card(_mutated(tags=["hubkit", "lora", f"base_model:adapter:{BASE}"])),
        None,
        None,
        "tags",
        "hubkit-method",
    ),
    (make_card(_mutated(tags=[*ADAPTER_TAGS, "hubkit-method:Bad Name"])), None, None, "tags", "method names"),
    (make_card(_mutated(tags=ADAPTER_TAGS[:4])), None, None, "tags", f"base_model:adapter:{BASE}"),
    (
        make_card(_mutated(tags=[*ADAPTER_TAGS, "base_model:adapter:x/y"])),
        None,
        None,
        "tags",
        "does not match",
    ),
    (make_card(_mutated(tags="hubkit")), "adapter", None, "tags", "must be a list"),
    (make_card(_mutated()), "quantized", None, "tags", "'hubkit-kind:adapter' does not match"),
    (make_card(_mutated()), None, "space", "kind", "belong in a model repo"),
    (make_card(_mutated(license=["mit"])), None, None, "license", "must be a string"),
    (make_card(_mutated(license="Apache 2.0")), None, None, "license", "not a license id"),
    (make_card(_mutated(license="other")), None, None, "license_name", "license is 'other'"),
    (make_card(_mutated(library_name="Diffusers Lib")), None, None, "library_name", "not valid for adapter"),
    (make_card(_mutated(base_model="/tmp/base")), None, None, "base_model", "local path"),
    (make_card(_mutated(**{"model-index": {"name": "x"}})), None, None, "model-index", "non-empty list"),
    (
        make_card(_mutated(**{"model-index": [{"name": "x"}]})),
        None,
        None,
        "model-index[0].results",
        "missing",
    ),
    (make_card(_mutated(), body="\n  \n"), None, None, "body", "empty"),
    (make_card(_mutated(), body="\n# {{ title }}\n"), None, None, "body", "unrendered"),
]


@pytest.mark.parametrize(
    ("text", "kind", "repo_type", "field", "words"),
    PROBLEM_CASES,
    ids=[f"{case[3]}:{case[4]}" for case in PROBLEM_CASES],
)
def test_each_class_of_problem_is_detected(
    text: str, kind: str | None, repo_type: str | None, field: str, words: str
) -> None:
    problems = validate_card(text, kind, repo_type=repo_type)
    matching = [p for p in problems if p.field == field]
    assert matching, f"no {field!r} problem in {problems}"
    assert any(words in p.message for p in matching), [str(p) for p in matching]


def test_all_problems_of_a_broken_card_are_reported_at_once() -> None:
    text = (
        "---\n"
        "library_name: diffusers\n"
        "pipeline_tag: text-generation\n"
        "base_model_relation: derived\n"
        "license: [mit]\n"
        "tags: [lora, hubkit-kind:adapter]\n"
        "model-index:\n"
        "- name: spm-red\n"
        "  results:\n"
        "  - task: {}\n"
        "    dataset: {name: shapes}\n"
        "    metrics: [{type: fid}]\n"
        "---\n"
    )
    problems = validate_card(text)
    assert fields(problems) == {
        "pipeline_tag",
        "base_model_relation",
        "license",
        "base_model",
        "tags",
        "model-index[0].results[0].task.type",
        "model-index[0].results[0].dataset.type",
        "model-index[0].results[0].metrics[0].value",
        "body",
    }
    tag_messages = [p.message for p in problems if p.field == "tags"]
    assert len(tag_messages) == 2  # 'hubkit' and 'hubkit-method:<name>' both named
    assert len(problems) == len(set(problems)) == 10
    with pytest.raises(CardError) as err:
        raise CardError(problems, source="README.md")
    assert err.value.problems == problems
    assert all(str(problem) in str(err.value) for problem in problems)


def test_space_problems_are_reported_together() -> None:
    meta = front_matter(render_card("space", **MINIMAL[ArtifactKind.SPACE]))
    meta.update(sdk="streamlit", colorFrom="teal", short_description="x" * 61, sdk_version=5.0, pinned="no")
    del meta["title"]
    problems = validate_card(make_card(meta), repo_type="space")
    assert fields(problems) == {"sdk", "colorFrom", "short_description", "sdk_version", "pinned", "title"}
    assert "quote it in YAML" in next(p.message for p in problems if p.field == "sdk_version")


def test_pipeline_needs_relation_with_base_and_model_index_only_on_models() -> None:
    meta = front_matter(render_card("pipeline", repo_id=BASE))
    assert validate_card(make_card({**meta, "base_model": BASE})) == [
        CardProblem(
            "base_model_relation", "missing (required when base_model is set; use 'finetune' or 'merge')"
        )
    ]
    dataset = front_matter(render_card("dataset", repo_id="hubkit/shapes"))
    result = {
        "task": {"type": "t"},
        "dataset": {"type": "d", "name": "d"},
        "metrics": [{"type": "m", "value": 1}],
    }
    index = [{"name": "x", "results": [result]}]
    problems = validate_card(make_card({**dataset, "model-index": index}), repo_type="dataset")
    assert fields(problems) == {"model-index"}


def test_kind_inference() -> None:
    assert infer_kind({"tags": ["hubkit-kind:metric"]}) is ArtifactKind.METRIC
    assert infer_kind({"base_model_relation": "adapter"}) is ArtifactKind.ADAPTER
    assert infer_kind({"base_model_relation": "quantized"}) is ArtifactKind.QUANTIZED
    assert infer_kind({"base_model_relation": "finetune"}) is ArtifactKind.PIPELINE
    assert infer_kind({"tags": ["lora"]}) is ArtifactKind.ADAPTER
    assert infer_kind({}, "model") is ArtifactKind.PIPELINE
    assert infer_kind({}, "dataset") is ArtifactKind.DATASET
    assert infer_kind({"sdk": "gradio"}) is ArtifactKind.SPACE
    assert infer_kind({"sdk": "gradio", "tags": ["evaluate", "metric"]}) is ArtifactKind.METRIC
    assert ArtifactKind.METRIC.repo_type == "space" and ArtifactKind.QUANTIZED.repo_type == "model"
    with pytest.raises(ValueError, match="expected one of: adapter, quantized"):
        ArtifactKind.parse("lora")


def test_card_problem_str() -> None:
    problem = CardProblem("base_model", "missing (required for adapter cards)")
    assert str(problem) == "base_model: missing (required for adapter cards)"
    with pytest.raises(AttributeError):
        problem.field = "x"  # type: ignore[misc]


# -------------------------------------------------------------------------------------- folders, repos


def test_check_folder(tmp_path: Path) -> None:
    problems = check_folder(tmp_path)
    assert fields(problems) == {"README.md"} and "missing" in problems[0].message
    assert fields(check_folder(tmp_path / "absent")) == {"README.md"}
    render_card("adapter", **MINIMAL[ArtifactKind.ADAPTER]).save(tmp_path / "README.md")
    assert check_folder(tmp_path) == []
    assert fields(check_folder(tmp_path, repo_type="dataset")) == {"kind"}


def test_check_folder_space_needs_its_app_file(tmp_path: Path) -> None:
    render_card("space", **MINIMAL[ArtifactKind.SPACE]).save(tmp_path / "README.md")
    problems = check_folder(tmp_path, repo_type="space")
    assert problems == [CardProblem("app_file", f"'app.py' is named in the card but not in {tmp_path}")]
    (tmp_path / "app.py").write_text("import gradio\n")
    assert check_folder(tmp_path, repo_type="space") == []


def test_check_card_source_local_paths(tmp_path: Path) -> None:
    render_card("dataset", repo_id="hubkit/shapes").save(tmp_path / "README.md")
    assert check_card_source(str(tmp_path), repo_type="dataset") == []
    assert check_card_source(str(tmp_path / "README.md"), repo_type="dataset") == []
    assert fields(check_card_source(str(tmp_path), repo_type="model")) == {"kind"}
    assert check_card_source(str(tmp_path), repo_type=None) == []  # local: the card's own repo type
    with pytest.raises(CardError) as err:
        check_card_source(str(tmp_path / "nope" / "README.md"))
    assert fields(err.value.problems) == {"README.md"}
    with pytest.raises(CardError, match="neither an existing path nor a repo id"):
        check_card_source("bad--name")


def _http_error(cls: type[Exception], message: str) -> Exception:
    response = httpx2.Response(404, request=httpx2.Request("GET", "http://127.0.0.1:1/x"))
    return cls(message, response=response)  # type: ignore[call-arg]


def test_check_card_source_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    render_card("adapter", **MINIMAL[ArtifactKind.ADAPTER]).save(readme)
    calls: list[tuple[Any, ...]] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append((repo_id, filename, kwargs))
        if repo_id == "alice/missing":
            raise _http_error(RepositoryNotFoundError, "404 Repository Not Found")
        if repo_id == "alice/empty":
            raise _http_error(RemoteEntryNotFoundError, "404 Entry Not Found")
        return str(readme)

    monkeypatch.setattr(validate_module, "hf_hub_download", fake_download)
    endpoint = "http://127.0.0.1:1"
    assert check_card_source("alice/spm-red", endpoint=endpoint, token="t0k") == []
    assert calls[0] == (
        "alice/spm-red",
        "README.md",
        {"repo_type": "model", "endpoint": endpoint, "token": "t0k"},
    )
    assert fields(check_card_source("alice/empty", endpoint=endpoint)) == {"README.md"}
    with pytest.raises(CardError) as err:
        check_card_source("alice/missing", endpoint=endpoint)
    assert fields(err.value.problems) == {"repo"}
    assert "alice/missing" in str(err.value) and endpoint in str(err.value)


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_check_ok_and_problems(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good"
    render_card("quantized", **MINIMAL[ArtifactKind.QUANTIZED]).save(good / "README.md")
    result = runner.invoke(card_app, ["check", str(good)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "card OK (quantized)"

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "README.md").write_text("---\nlicense: mit\ntags: [lora]\n---\n")
    result = runner.invoke(card_app, ["check", str(bad), "--kind", "adapter"])
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert {line.split(":", 1)[0] for line in lines} == {
        "library_name", "pipeline_tag", "base_model", "base_model_relation", "tags", "body",
    }  # fmt: skip
    assert "base_model: missing (required for adapter cards)" in lines
    assert "problems" in result.output  # summary on stderr

    result = runner.invoke(card_app, ["check", str(good), "--repo-type", "space"])
    assert result.exit_code == 1
    assert "kind: quantized cards belong in a model repo, not a space repo" in result.stdout

    space = tmp_path / "space"
    render_card("space", **MINIMAL[ArtifactKind.SPACE]).save(space / "README.md")
    (space / "app.py").write_text("import gradio\n")
    result = runner.invoke(card_app, ["check", str(space / "README.md")])
    assert result.exit_code == 0 and result.stdout.strip() == "card OK (space)"


def test_cli_check_missing_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_args: Any, **_kwargs: Any) -> str:
        raise _http_error(RepositoryNotFoundError, "404 Repository Not Found")

    monkeypatch.setattr(validate_module, "hf_hub_download", missing)
    runner = CliRunner()
    result = runner.invoke(card_app, ["check", "alice/nothing", "--endpoint", "http://127.0.0.1:1"])
    assert result.exit_code == 1
    assert result.stdout.startswith("repo: no local path 'alice/nothing'")
    result = runner.invoke(card_app, ["check", str(tmp_path / "absent.md")])
    assert result.exit_code == 1 and "no such file or folder" in result.stdout
    result = runner.invoke(card_app, ["check", str(tmp_path), "--kind", "lora"])
    assert result.exit_code == 2  # click rejects an unknown choice


def test_hubkit_card_check_is_wired_into_the_main_cli(tmp_path: Path) -> None:
    from hubkit.cli import app

    render_card("dataset", repo_id="hubkit/shapes").save(tmp_path / "README.md")
    result = CliRunner().invoke(app, ["card", "check", str(tmp_path), "--repo-type", "dataset"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "card OK (dataset)"
