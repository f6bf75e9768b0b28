"""LoRA fine-tuning (SaRA's baseline) and merged export: config, targets, parameter parity, fused LoRA."""

from __future__ import annotations

import json

import pytest
import torch
from hubkit.adapters.lora_finetune.config import LoRAFineTuneConfig
from hubkit.adapters.lora_finetune.method import LoRAFineTuneMethod, target_paths
from hubkit.adapters.sara.config import SaraAdapterConfig
from hubkit.adapters.sara.model import inject_sara

from hubkit.methods import Artifact, DiffusersLora, MethodError, get_method, method_for
from hubkit.world.base_model import assemble_pipeline


@pytest.fixture(scope="module")
def pipe():
    return assemble_pipeline()


def test_config_is_checked():
    with pytest.raises(ValueError, match="needs a dataset"):
        LoRAFineTuneConfig()
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoRAFineTuneConfig(dataset="x", rank=0)
    with pytest.raises(ValueError, match="layer types"):
        LoRAFineTuneConfig(dataset="x", layer_types=["attention"])
    with pytest.raises(ValueError, match="prior_share"):
        LoRAFineTuneConfig(dataset="x", prior_share=1.0)


def test_demo_lora_has_about_the_parameters_of_the_demo_sara(pipe):
    """The baseline is compared at equal trainable parameters: same layers, the closest rank."""
    lora = next(d for d in LoRAFineTuneMethod().demo_artifacts()).config
    sara = next(d for d in get_method("sara").demo_artifacts()).config
    paths = target_paths(pipe.unet, lora)
    modules = dict(pipe.unet.named_modules())
    count = 0
    for path in paths:
        m = modules[path]
        inner = (
            m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            if isinstance(m, torch.nn.Conv2d)
            else m.in_features
        )
        count += lora.rank * (inner + (m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features))
    unet = assemble_pipeline().unet
    selected = inject_sara(unet, SaraAdapterConfig(threshold=sara.threshold)).peft_config["default"].selected
    assert len(paths) == 119 and count == 559_384 and selected == 593_989
    for rank in (lora.rank - 1, lora.rank + 1):  # the demo's rank is the closest one
        assert abs(count / lora.rank * rank - selected) > abs(count - selected)


def test_artifacts_are_recognised_by_their_hubkit_json(tmp_path):
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (tmp_path / "hubkit.json").write_text(json.dumps({"method": "lora-finetune"}))
    artifact = Artifact(source=str(tmp_path), path=tmp_path, hubkit_json={"method": "lora-finetune"})
    assert method_for(artifact).name == "lora-finetune"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pytorch_lora_weights.safetensors").write_bytes(b"")
    assert method_for(Artifact(source=str(plain), path=plain)).name == "lora"


def test_a_merged_lora_is_the_fused_lora(pipe, tmp_path):
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = assemble_pipeline().unet
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_k", "to_v"], init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(unet))
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 16, 384, generator=g)
    with torch.no_grad():
        expected = unet(x, torch.tensor([400]), encoder_hidden_states=emb).sample
    artifact = Artifact(source=str(tmp_path), path=tmp_path)
    merged = DiffusersLora().merged(artifact, assemble_pipeline())
    assert not any("lora" in k for k in merged.unet.state_dict())  # plain weights, fused
    with torch.no_grad():
        got = merged.unet(x, torch.tensor([400]), encoder_hidden_states=emb).sample
    assert torch.allclose(got, expected, atol=1e-4)
    with pytest.raises(MethodError, match="cannot be merged"):
        get_method("spm").merged(artifact, pipe)
