"""Round trips through the embedded Hub with the stock libraries: diffusers, transformers, peft, datasets.

Every model is a tiny random one built here (nothing can be downloaded), seeded, and pushed / loaded with the
libraries' own unmodified calls. The libraries are pointed at the server the way ``HF_ENDPOINT`` would do it
(the ``use_hub`` fixture); the offline test goes further and runs a fresh interpreter with ``HF_ENDPOINT`` and
``HF_HUB_OFFLINE=1`` in its environment, exactly as a user would.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

if TYPE_CHECKING:
    from tests.conftest import HubServer

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture
def use_hub(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """Point huggingface_hub, diffusers, transformers, peft and datasets at ``hub`` as ``HF_ENDPOINT`` would.

    ``HF_ENDPOINT`` is read once, at import time, into module constants: the Hub endpoint and the URL template
    derived from it (huggingface_hub), the module-level ``HfApi`` behind ``huggingface_hub.model_info`` & co.
    (which diffusers calls), the trusted-host set, and datasets' own copies. Loads stay anonymous (public
    repos); pushes pass ``token=`` explicitly.
    """
    import datasets.config
    from huggingface_hub import constants, hf_api

    url = hub.url
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", url)
    monkeypatch.setattr(
        datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"
    )
    return hub


def alice(hub: HubServer) -> tuple[str, str]:
    """``(namespace, token)`` of the test user who pushes."""
    return "alice", hub.users["alice"]


def xorb_count(hub: HubServer) -> int:
    """Xet xorbs the server holds: grows with Xet uploads of new content, never with classic LFS ones."""
    return len(list((hub.data_dir / "xorbs").iterdir()))


def check_transfer(hub: HubServer, transfer: str, xorbs_before: int) -> None:
    """The upload really went the way the ``transfer`` parameter says."""
    if transfer == "xet":
        assert xorb_count(hub) > xorbs_before, "no Xet upload reached the server"
    else:
        assert xorb_count(hub) == xorbs_before, "a Xet upload happened with HF_HUB_DISABLE_XET"


def assert_state_dicts_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def salt(transfer: str) -> int:
    """Seed offset per transfer mode: the same bytes uploaded twice would let the second mode skip the
    upload (the server already has them), so each mode pushes its own content."""
    return {"xet": 0, "lfs": 1000}[transfer]


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every parameter with seeded noise (so zero-initialised layers are checked too)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.02)
    return module


# ------------------------------------------------------------------------------------ diffusers


def tiny_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
    ).eval()


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP ``bytes_to_unicode``)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def tiny_clip_tokenizer(folder: Path):
    """A CLIP tokenizer from hand-written ``vocab.json`` + ``merges.txt``: every byte alone and as an end of
    word, two merges and CLIP's special tokens (no download needed)."""
    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), "re", "red</w>", "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=16)


def tiny_sd_pipeline(tmp_path: Path, seed: int = 0):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer(tmp_path / "tokenizer")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(seed=seed + 2),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def generate(pipe) -> np.ndarray:
    out = pipe(
        "a red square",
        num_inference_steps=2,
        guidance_scale=2.0,
        height=16,
        width=16,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    )
    return out.images


def test_diffusers_unet_push_to_hub_from_pretrained(use_hub: HubServer, transfer: str, repo_name: str):
    from diffusers import UNet2DConditionModel

    namespace, token = alice(use_hub)
    repo_id = f"{namespace}/{repo_name}"
    unet = randomize_(tiny_unet(), seed=3 + salt(transfer))
    xorbs = xorb_count(use_hub)
    unet.push_to_hub(repo_id, token=token)
    check_transfer(use_hub, transfer, xorbs)

    files = use_hub.api("alice").list_repo_files(repo_id)
    assert {"config.json", "diffusion_pytorch_model.safetensors"} <= set(files)
    loaded = UNet2DConditionModel.from_pretrained(repo_id)
    assert tuple(loaded.config.block_out_channels) == (8, 16)
    assert_state_dicts_equal(unet.state_dict(), loaded.state_dict())


def test_diffusers_pipeline_upload_folder_from_pretrained(
    use_hub: HubServer, transfer: str, tmp_path: Path, repo_name: str
):
    """``upload_folder`` of a saved pipeline (with hf_xet it takes its own streamed multi-file path), then
    ``DiffusionPipeline.from_pretrained``: same components, same weights, same images."""
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    namespace, _ = alice(use_hub)
    repo_id = f"{namespace}/{repo_name}"
    pipe = tiny_sd_pipeline(tmp_path, seed=salt(transfer))
    pipe.set_progress_bar_config(disable=True)
    local = tmp_path / "pipe"
    pipe.save_pretrained(local)
    api = use_hub.api("alice")
    api.create_repo(repo_id)
    xorbs = xorb_count(use_hub)
    api.upload_folder(repo_id=repo_id, folder_path=local, commit_message="tiny pipeline")
    check_transfer(use_hub, transfer, xorbs)

    loaded = DiffusionPipeline.from_pretrained(repo_id)
    assert isinstance(loaded, StableDiffusionPipeline)
    loaded.set_progress_bar_config(disable=True)
    for name in ("unet", "vae", "text_encoder"):
        assert_state_dicts_equal(getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict())
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert public(loaded.scheduler.config) == public(pipe.scheduler.config)
    prompt = "a red square"
    assert loaded.tokenizer(prompt).input_ids == pipe.tokenizer(prompt).input_ids

    expected, actual = generate(pipe), generate(loaded)
    assert expected.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------ transformers


def tiny_gpt2(seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config).eval()


def test_transformers_push_to_hub_revisions(use_hub: HubServer, transfer: str, repo_name: str):
    from transformers import AutoModelForCausalLM, BertConfig, BertModel, GPT2LMHeadModel

    namespace, token = alice(use_hub)
    repo_id = f"{namespace}/{repo_name}"
    api = use_hub.api("alice")

    first = tiny_gpt2(seed=10 + salt(transfer))
    xorbs = xorb_count(use_hub)
    first.push_to_hub(repo_id, token=token)
    check_transfer(use_hub, transfer, xorbs)
    first_sha = api.model_info(repo_id).sha
    api.create_tag(repo_id, tag="v1", revision=first_sha)
    api.create_branch(repo_id, branch="frozen", revision=first_sha)

    second = tiny_gpt2(seed=11 + salt(transfer))
    second.push_to_hub(repo_id, token=token, commit_message="second weights")
    third = tiny_gpt2(seed=12 + salt(transfer))
    third.push_to_hub(repo_id, token=token, revision="dev")  # push_to_hub creates the branch

    second_sha = api.model_info(repo_id).sha
    assert second_sha != first_sha
    expected = {
        None: second,
        "main": second,
        second_sha: second,
        "v1": first,
        "frozen": first,
        first_sha: first,
        first_sha[:12]: first,
        "dev": third,
    }
    for revision, model in expected.items():
        loaded = AutoModelForCausalLM.from_pretrained(repo_id, revision=revision)
        assert isinstance(loaded, GPT2LMHeadModel), revision
        assert_state_dicts_equal(model.state_dict(), loaded.state_dict())

    torch.manual_seed(13 + salt(transfer))
    bert = BertModel(
        BertConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).eval()
    bert.push_to_hub(f"{repo_id}-bert", token=token)
    assert_state_dicts_equal(bert.state_dict(), BertModel.from_pretrained(f"{repo_id}-bert").state_dict())


# ------------------------------------------------------------------------------------ peft


def test_peft_lora_push_to_hub_from_pretrained(use_hub: HubServer, transfer: str, repo_name: str):
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

    namespace, token = alice(use_hub)
    repo_id = f"{namespace}/{repo_name}"
    torch.manual_seed(20 + salt(transfer))
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], init_lora_weights=False, fan_in_fan_out=True
    )
    peft_model = get_peft_model(tiny_gpt2(seed=21 + salt(transfer)), config)
    peft_model.eval()
    xorbs = xorb_count(use_hub)
    peft_model.push_to_hub(repo_id, token=token)
    check_transfer(use_hub, transfer, xorbs)

    files = set(use_hub.api("alice").list_repo_files(repo_id))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    loaded = PeftModel.from_pretrained(tiny_gpt2(seed=21 + salt(transfer)), repo_id)
    loaded.eval()
    assert loaded.peft_config["default"].r == 4
    assert_state_dicts_equal(get_peft_model_state_dict(peft_model), get_peft_model_state_dict(loaded))
    ids = torch.arange(8).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, peft_model(ids).logits, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ datasets


def test_datasets_push_to_hub_load_dataset(use_hub: HubServer, transfer: str, repo_name: str):
    """datasets uploads parquet shards with ``preupload_lfs_files`` and deletes them before the commit, so
    this only works when the server takes real LFS-mode uploads (Xet, or LFS batch + PUT)."""
    from datasets import Dataset, Features, Image, Value, load_dataset
    from PIL import Image as PILImage

    namespace, token = alice(use_hub)
    repo_id = f"{namespace}/{repo_name}"
    rng = np.random.default_rng(30 + salt(transfer))
    images = [PILImage.fromarray(rng.integers(0, 256, (8 + i, 8, 3), dtype=np.uint8)) for i in range(4)]
    png = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        png.append(buf.getvalue())
    features = Features({"text": Value("string"), "label": Value("int64"), "image": Image()})
    rows = {
        "text": ["a red square", "a blue circle", "ünïcödé ✓", ""],
        "label": [0, 1, 2, -3],
        "image": [{"bytes": b, "path": None} for b in png],
    }
    ds = Dataset.from_dict(rows, features=features)
    xorbs = xorb_count(use_hub)
    ds.push_to_hub(repo_id, token=token)
    check_transfer(use_hub, transfer, xorbs)

    files = use_hub.api("alice").list_repo_files(repo_id, repo_type="dataset")
    assert any(f.startswith("data/train-") and f.endswith(".parquet") for f in files), files

    loaded = load_dataset(repo_id, split="train")
    assert loaded.features == features
    assert loaded["text"] == rows["text"]
    assert loaded["label"] == rows["label"]
    raw = loaded.cast_column("image", Image(decode=False))
    assert [item["bytes"] for item in raw["image"]] == png
    for original, row in zip(images, loaded, strict=True):
        assert np.array_equal(np.asarray(row["image"]), np.asarray(original))


# ------------------------------------------------------------------------------------ offline cache


def tensor_digests(state_dict: dict[str, torch.Tensor]) -> dict[str, str]:
    import hashlib

    return {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in state_dict.items()}


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from transformers import AutoModelForCausalLM

    repo_id, missing_repo = sys.argv[1], sys.argv[2]
    assert constants.HF_HUB_OFFLINE, "HF_HUB_OFFLINE=1 was not seen"
    report = {}
    model = AutoModelForCausalLM.from_pretrained(repo_id)
    report["digests"] = {
        k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in model.state_dict().items()
    }
    folder = snapshot_download(repo_id)
    report["snapshot_files"] = sorted(os.listdir(folder))
    report["config_path"] = hf_hub_download(repo_id, "config.json")
    for what, call in (
        ("missing_repo_from_pretrained", lambda: AutoModelForCausalLM.from_pretrained(missing_repo)),
        ("missing_repo_snapshot", lambda: snapshot_download(missing_repo)),
        ("missing_file", lambda: hf_hub_download(repo_id, "never-downloaded.bin")),
    ):
        try:
            call()
            report[what] = None
        except Exception as err:
            chain, cause = [], err
            while cause is not None:
                chain.append(type(cause).__name__ + ": " + str(cause))
                cause = cause.__cause__ or cause.__context__
            report[what] = chain
    print("REPORT" + json.dumps(report))
    """
)


def test_offline_mode_reads_the_cache(use_hub: HubServer, repo_name: str):
    """A fresh interpreter with ``HF_HUB_OFFLINE=1``, the same ``HF_HOME`` and ``HF_ENDPOINT`` loads what an
    online run downloaded, and says "offline" for what it never downloaded."""
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM

    namespace, token = alice(use_hub)
    repo_id = f"{namespace}/{repo_name}"
    model = tiny_gpt2(seed=40)
    model.push_to_hub(repo_id, token=token)
    use_hub.api("alice").create_repo(f"{repo_id}-never")
    # Online: fill the cache the way a user would, with the stock calls.
    AutoModelForCausalLM.from_pretrained(repo_id)
    online_folder = snapshot_download(repo_id)

    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PYTEST_CURRENT_TEST")}
    env.update(HF_HUB_OFFLINE="1", HF_ENDPOINT=use_hub.url, HF_HOME=os.environ["HF_HOME"])
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, repo_id, f"{repo_id}-never"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT"))
    report = json.loads(line.removeprefix("REPORT"))
    assert report["digests"] == tensor_digests(model.state_dict())
    assert report["snapshot_files"] == sorted(os.listdir(online_folder))
    assert "config.json" in report["snapshot_files"]
    assert report["config_path"].startswith(os.environ["HF_HOME"])
    for key in ("missing_repo_from_pretrained", "missing_repo_snapshot", "missing_file"):
        assert report[key] is not None, f"{key} succeeded while offline"
        # The error, or one it wraps, must name offline mode as the reason (not a failed connection).
        assert report[key][0].startswith(("OSError", "LocalEntryNotFoundError")), (key, report[key])
        assert any(
            link.startswith("OfflineModeIsEnabled") or "outgoing traffic has been disabled" in link
            for link in report[key]
        ), (key, report[key])
