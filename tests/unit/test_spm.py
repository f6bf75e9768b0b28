"""SPM: the membranes, their files, facilitated transport and bad input, on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_spm
from diffusers import UNet2DConditionModel, UNet2DModel
from hubkit.adapters.spm import SPMConfig, SPMError, SPMNetwork, find_targets, read_spm, save_spm
from hubkit.adapters.spm.serialization import WEIGHT_NAME
from hubkit.pipelines.spm import load_spm, permeability, unload_spm

from hubkit.world.base_model import assemble_pipeline


def sd15_unet_config() -> dict:
    """Stable Diffusion 1.5's UNet (diffusers defaults are SD 1.x's: 320/640/1280/1280, 768-d text)."""
    return {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8}


@pytest.fixture(scope="module")
def pipe():
    p = assemble_pipeline()
    torch.manual_seed(0)
    return p


def _trained(pipe, tmp: Path, concepts=("red",), steps=2, **kw) -> Path:
    weights, config = tiny_spm(pipe, list(concepts), boost=50, steps=steps, **kw)
    out = tmp / "-".join(concepts)
    save_spm(out, weights, config, {"base_model": "hubkit/tiny-sd-shapes"})
    return out


def _unet_out(pipe, emb: torch.Tensor) -> torch.Tensor:
    x = torch.randn(emb.shape[0], 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return pipe.unet(x, torch.tensor(500), encoder_hidden_states=emb).sample


def _emb(pipe, prompts):
    with torch.no_grad():
        return pipe.encode_prompt(prompts, "cpu", 1, False)[0]


def test_targets_are_every_linear_and_conv_in_transformer_blocks_on_sd15_shape():
    with torch.device("meta"):
        unet = UNet2DConditionModel(**sd15_unet_config())
    targets = find_targets(unet)
    assert len(targets) == 16 * 12  # 16 Transformer2DModels × 12 layers, as the paper's SPM
    assert sum(isinstance(m, torch.nn.Conv2d) for m in targets.values()) == 32  # proj_in/out are 1×1 convs
    rank1 = sum(
        m.in_channels + m.out_channels if isinstance(m, torch.nn.Conv2d) else m.in_features + m.out_features
        for m in targets.values()
    )
    unet_params = sum(p.numel() for p in unet.parameters())
    assert rank1 == 423_936  # the research notes' count: 1.70 MB fp32
    assert rank1 / unet_params < 0.001  # ≤ 0.1 % of the UNet (≈ 0.049 %)


@pytest.mark.parametrize(
    "base, x",
    [
        (torch.nn.Linear(8, 6), torch.randn(3, 5, 8)),
        (torch.nn.Linear(8, 6), torch.randn(3, 8)),
        (torch.nn.Conv2d(8, 6, 1), torch.randn(3, 8, 4, 4)),
        (torch.nn.Conv2d(8, 6, 3, padding=1, stride=2), torch.randn(3, 8, 6, 6)),
    ],
)
def test_in_place_inference_path_equals_the_autograd_path(base, x):
    from hubkit.adapters.spm.layer import SPMLayer

    layer = SPMLayer(base)
    layer.add("a", 1, 1.0, torch.float32, torch.device("cpu"))
    layer.add("b", 2, 3.0, torch.float32, torch.device("cpu"))  # other rank, other scaling
    for name in ("a", "b"):
        torch.nn.init.normal_(layer.up[name])
    for names in (["a"], ["a", "b"]):
        for scales in (torch.rand(len(names)), torch.rand(3, len(names))):  # every sample / per sample
            expected = (base(x) + layer(x, names, scales)).detach()
            out = base(x).detach()
            rows = torch.tensor(layer.ranks(names))
            layer.add_delta_(out, x, names, scales.repeat_interleave(rows, dim=-1))
            torch.testing.assert_close(out, expected)
    with torch.no_grad():
        layer.up["a"].data.mul_(2)  # edits in place are seen: nothing stale is cached
    out = base(x).detach()
    layer.add_delta_(out, x, ["a"], torch.ones(1))
    torch.testing.assert_close(out, (base(x) + layer(x, ["a"], torch.ones(1))).detach())


def test_unknown_architecture_is_a_clear_error():
    unet = UNet2DModel(
        sample_size=8,
        block_out_channels=(32, 32),
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    with pytest.raises(SPMError, match="unsupported base architecture UNet2DModel"):
        SPMNetwork(unet)


def test_empty_concept_is_refused():
    for concepts in ([], [""], ["red", "  "]):
        with pytest.raises(ValueError, match="non-empty concept"):
            SPMConfig(concepts=concepts)


def test_preserve_is_checked():
    for preserve in ([""], ["red"]):
        with pytest.raises(ValueError, match="preserve must name"):
            SPMConfig(concepts=["red"], preserve=preserve)
    with pytest.raises(ValueError, match="preserve needs latent anchoring"):
        SPMConfig(concepts=["red"], preserve=["purple"], anchoring_strength=0)


def test_preserved_concepts_are_anchored_every_step(pipe):
    from hubkit.adapters.spm.train import SPMStep

    config = SPMConfig(
        concepts=["red"], preserve=["purple", "blue"], templates=["{}", "a {}"], anchors_per_step=3
    )
    step = SPMStep(pipe, config)
    step.setup(torch.device("cpu"))
    try:
        for index in range(2):
            anchors = step._anchors(step.targets[0], torch.Generator().manual_seed(index))
            assert len(anchors) == 1 + 2 * 2 + 3  # "", each preserved concept in each template, randoms
            assert torch.equal(anchors.embeds[:1], step.empty.embeds) and anchors.pooled is None
            assert torch.equal(anchors.embeds[1:5], _emb(pipe, ["purple", "a purple", "blue", "a blue"]))
    finally:
        step.abort()


def test_fresh_membrane_is_identity_and_disabled_gives_base(pipe):
    emb = _emb(pipe, ["a red circle"])
    base = _unet_out(pipe, emb)
    net = SPMNetwork(pipe.unet)
    try:
        net.add_adapter("a", SPMConfig(concepts=["red"]))
        assert torch.equal(_unet_out(pipe, emb), base)  # up = 0: starts as the identity
        for layer in net.layers.values():
            layer.up["a"].data.normal_()
        assert not torch.allclose(_unet_out(pipe, emb), base)
        with net.disabled():
            assert torch.equal(_unet_out(pipe, emb), base)
    finally:
        net.detach_hooks()
    assert torch.equal(_unet_out(pipe, emb), base)


def test_file_loads_with_stock_load_lora_weights_and_matches_transport_off(pipe, tmp_path):
    folder = _trained(pipe, tmp_path)
    emb = _emb(pipe, ["a red circle", "a blue square"])
    base = _unet_out(pipe, emb)
    load_spm(pipe, folder, transport=False)
    pipe.spm._set_scales(None, emb, 1, False)
    ours = _unet_out(pipe, emb)
    unload_spm(pipe)
    assert torch.equal(_unet_out(pipe, emb), base)  # unloading restores the stock pipeline exactly
    pipe.load_lora_weights(str(folder))  # the stock diffusers loader
    try:
        stock = _unet_out(pipe, emb)
    finally:
        pipe.unload_lora_weights()
    assert (ours - base).abs().max() > 1e-3
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-5)
    meta = json.loads((folder / "hubkit.json").read_text())
    assert meta["method"] == "spm" and meta["concepts"] == ["red"]


def test_per_sample_transport_equals_one_prompt_at_a_time(pipe, tmp_path):
    red, tri = _trained(pipe, tmp_path, ["red"]), _trained(pipe, tmp_path, ["triangle"])
    prompts = ["a red circle", "a green triangle", "a blue square"]
    emb = _emb(pipe, prompts)
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(3))

    def run(rows_x, rows_emb):
        with torch.no_grad():
            return pipe.unet(rows_x, torch.tensor(500), encoder_hidden_states=rows_emb).sample

    ft = load_spm(pipe, red)
    load_spm(pipe, tri)
    try:
        m = ft.permeability(prompts)
        assert m["red"][0] == pytest.approx(1.0) and m["triangle"][1] == pytest.approx(1.0)  # token overlap
        assert 0.0 < m["red"][2] < 1.0 and 0.0 < m["triangle"][2] < 1.0
        ft._set_scales(prompts, emb, 1, True)  # mixed batch: per-sample membranes, CFG rows doubled
        assert ft.network.scales.shape == (6, 2) and not ft.network._merged
        torch.testing.assert_close(ft.network.scales[:3], ft.network.scales[3:])  # uncond gets its prompt's
        mixed = run(torch.cat([x, x]), torch.cat([emb, emb]))
        for i, p in enumerate(prompts):
            ft._set_scales([p], emb[i : i + 1], 1, True)  # one prompt: merged into the weights
            assert ft.network.scales is None and ft.network._merged
            single = run(torch.cat([x[i : i + 1]] * 2), torch.cat([emb[i : i + 1]] * 2))
            torch.testing.assert_close(single[0], mixed[i], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(single[1], mixed[3 + i], rtol=1e-4, atol=1e-5)
        ft.enabled = False  # transport off: every SPM at full strength on every prompt
        ft._set_scales(prompts, emb, 1, True)
        assert ft.network._merged_scales == [1.0, 1.0]
    finally:
        unload_spm(pipe)


def test_sum_of_deltas_has_no_cross_terms(pipe, tmp_path):
    red, tri = _trained(pipe, tmp_path, ["red"]), _trained(pipe, tmp_path, ["triangle"])
    emb = _emb(pipe, ["a red triangle"])
    base = _unet_out(pipe, emb)
    deltas = []
    for folder in (red, tri):
        load_spm(pipe, folder, transport=False)
        pipe.spm._set_scales(None, emb, 1, False)
        deltas.append(_unet_out(pipe, emb) - base)
        unload_spm(pipe)
    load_spm(pipe, red, transport=False)
    load_spm(pipe, tri, transport=False)
    pipe.spm._set_scales(None, emb, 1, False)
    both = _unet_out(pipe, emb) - base
    unload_spm(pipe)
    # Not exactly additive (the UNet is non-linear), but per layer it is: check one layer directly.
    net = SPMNetwork(pipe.unet)
    try:
        for name, folder in (("r", red), ("t", tri)):
            f = read_spm(folder)
            net.load_adapter(name, f.weights, f.config)
        layer = next(iter(net.layers.values()))
        x = (
            torch.randn(2, 7, layer.in_features)
            if not layer.is_conv
            else torch.randn(2, layer.in_features, 4, 4)
        )
        s = torch.tensor([0.3, 0.8])
        combined = layer(x, ["r", "t"], s)
        separate = 0.3 * layer(x, ["r"], torch.ones(1)) + 0.8 * layer(x, ["t"], torch.ones(1))
        torch.testing.assert_close(combined, separate, rtol=1e-5, atol=1e-6)
    finally:
        net.detach_hooks()
    assert both.abs().max() > 0 and all(d.abs().max() > 0 for d in deltas)


def test_permeability_is_max_of_cosine_and_token_overlap():
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    c = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])
    m = permeability(p, c)
    assert m.tolist() == pytest.approx([1.0, 2**-0.5])
    m = permeability(p, c, [{1, 2}, {7}], [{5}, {7, 9}])
    assert m.tolist() == pytest.approx([1.0, 2**-0.5])  # overlap 0.5 < cosine 0.707
    m = permeability(p, c, [{1, 2}, {7, 9}], [{5}, {7, 9}])
    assert m.tolist() == pytest.approx([1.0, 1.0])


def test_spm_for_another_unet_shape_is_refused(pipe, tmp_path):
    folder = _trained(pipe, tmp_path)
    other = UNet2DConditionModel(
        **{
            **pipe.unet.config,
            "block_out_channels": (64, 128),
            "_class_name": None,
            "_diffusers_version": None,
            "_name_or_path": None,
        }
    )
    with pytest.raises(SPMError, match="trained for another UNet shape"):
        SPMNetwork(other).load_adapter("x", read_spm(folder).weights, read_spm(folder).config)


def test_corrupt_and_truncated_files_are_clear_errors(pipe, tmp_path):
    folder = _trained(pipe, tmp_path)
    data = (folder / WEIGHT_NAME).read_bytes()
    (folder / WEIGHT_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(SPMError, match="corrupt or truncated"):
        read_spm(folder)
    (folder / WEIGHT_NAME).write_bytes(b"not a safetensors file at all")
    with pytest.raises(SPMError, match="corrupt or truncated"):
        load_spm(pipe, folder)
    assert getattr(pipe, "spm", None) is None  # nothing half-loaded


def test_official_kohya_file_is_imported(pipe, tmp_path):
    from safetensors.torch import save_file

    folder = _trained(pipe, tmp_path)
    spm = read_spm(folder)
    kohya = {}
    for path, (down, up, alpha) in spm.weights.items():
        stem = "lora_unet_" + path.replace(".", "_")
        kohya[f"{stem}.lora_down.weight"] = down
        kohya[f"{stem}.lora_up.weight"] = up
        kohya[f"{stem}.alpha"] = torch.tensor(alpha)
    official = tmp_path / "red_last.safetensors"
    save_file(kohya, str(official), metadata={"prompts": "red", "rank": "1", "alpha": "1.0"})
    emb = _emb(pipe, ["a red circle"])
    results = []
    for source in (folder, official):
        load_spm(pipe, source, transport=False)
        assert list(pipe.spm.concepts.values()) == [["red"]]
        pipe.spm._set_scales(None, emb, 1, False)
        results.append(_unet_out(pipe, emb))
        unload_spm(pipe)
    torch.testing.assert_close(results[0], results[1])
    with pytest.raises(SPMError, match="does not say which concepts"):
        save_file(kohya, str(tmp_path / "bare.safetensors"))
        read_spm(tmp_path / "bare.safetensors")


def test_save_is_atomic_when_writing_fails(pipe, tmp_path, monkeypatch):
    folder = _trained(pipe, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    spm = read_spm(folder)
    with pytest.raises(OSError, match="disk full"):
        save_spm(folder, spm.weights, spm.config)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temp files, old files whole


def test_disabled_gives_the_base_model_while_deltas_are_merged(pipe, tmp_path):
    folder = _trained(pipe, tmp_path)
    emb = _emb(pipe, ["a red circle"])
    base = _unet_out(pipe, emb)
    ft = load_spm(pipe, folder)
    try:
        ft._set_scales("a red circle", emb, 1, False)  # a single str prompt: one prompt, merged
        assert ft.network._merged and ft.last_scales[folder.name] == [pytest.approx(1.0)]
        assert not torch.equal(_unet_out(pipe, emb), base)
        with ft.network.disabled():
            assert torch.equal(_unet_out(pipe, emb), base)
        assert ft.network._merged  # merged again afterwards
        assert len(ft.permeability("a red circle")[folder.name]) == 1
    finally:
        unload_spm(pipe)


def test_spm_and_a_lora_compose_in_either_order(pipe, tmp_path):
    """A LoRA (e.g. a distilled LCM-LoRA) and an SPM on one pipeline: the SPM hooks the very layers the LoRA
    wraps, so each layer gives base + SPM delta + LoRA delta whichever was loaded first."""
    from peft import LoraConfig

    folder = _trained(pipe, tmp_path)
    emb = _emb(pipe, ["a red circle"])
    base = _unet_out(pipe, emb)
    lora = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "proj_in"], init_lora_weights=False)

    def add_lora() -> None:
        torch.manual_seed(0)  # the same random LoRA each time
        pipe.unet.add_adapter(lora, adapter_name="other")

    def remove_lora() -> None:
        pipe.unet.delete_adapters("other")
        pipe.unet.unload_lora()

    add_lora()
    lora_only = _unet_out(pipe, emb)
    try:
        load_spm(pipe, folder, transport=False)  # the LoRA first
        assert len(pipe.spm.network.paths) == len(find_targets(pipe.unet)) == 7 * 12  # not PEFT's insides
        lora_first = _unet_out(pipe, emb)
        unload_spm(pipe)
    finally:
        remove_lora()
    load_spm(pipe, folder, transport=False)  # the SPM first
    spm_only = _unet_out(pipe, emb)
    try:
        add_lora()
        spm_first = _unet_out(pipe, emb)
    finally:
        remove_lora()
        unload_spm(pipe)
    torch.testing.assert_close(spm_first, lora_first)
    for alone in (base, lora_only, spm_only):
        assert (spm_first - alone).abs().max() > 1e-3  # both deltas act
    assert torch.equal(_unet_out(pipe, emb), base)
