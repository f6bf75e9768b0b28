"""The quantized UNet in hubkit's method registry (entry point ``quantize``): calibrate, quantize, write a
folder stock diffusers loads, and load it back with its static activations."""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from hubkit.methods import Artifact, DemoArtifact, Method, MethodError, fuse_adapters

from .config import QuantizeConfig
from .serialization import ACTIVATIONS_NAME, CONFIG_NAME, SUBFOLDER, WEIGHTS_NAME, QuantizedFileError
from .weights import QuantizeError

__all__ = ["QuantizeMethod", "calibration_prompts"]


def calibration_prompts(config: QuantizeConfig, endpoint: str | None, token: str | None) -> list[str]:
    """``config.prompts``, else ``calibration_prompts`` distinct captions of the dataset, drawn with the
    seed (sorted first, so the draw does not depend on the dataset's order)."""
    if config.prompts:
        return list(config.prompts)
    from hubkit.finetune import FineTuneError, open_dataset

    try:
        data, source = open_dataset(
            config.calibration_dataset, config.calibration_config, "train", endpoint=endpoint, token=token
        )
    except FineTuneError as err:
        raise QuantizeError(str(err)) from err
    if config.caption_column not in data.column_names:
        raise QuantizeError(f"the dataset {source} has no column {config.caption_column!r} for captions")
    captions = sorted({str(c) for c in data[config.caption_column] if str(c).strip()})
    if not captions:
        raise QuantizeError(f"the dataset {source} has no captions to calibrate with")
    return random.Random(config.seed).sample(captions, min(config.calibration_prompts, len(captions)))


class QuantizeMethod(Method):
    """A UNet with integer weights (and calibrated static int8 activations) for a base pipeline."""

    name = "quantize"
    kind = "quantized"
    stack_phase = 1
    stack_rule = "it quantizes the UNet the components before it leave"
    replaces_unet = True
    config_class = QuantizeConfig
    data_parallel = False  # calibration, no gradient training: one process computes it

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        quantization = artifact.json_file(f"{SUBFOLDER}/{CONFIG_NAME}").get("quantization_config")
        return (
            artifact.has_file(f"{SUBFOLDER}/{ACTIVATIONS_NAME}")
            and isinstance(quantization, dict)
            and quantization.get("quant_method") == "sdnq"
        )

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        from hubkit.pipelines.quantize import load_quantized_unet

        if base is None:
            raise MethodError(f"{artifact.source} is a quantized UNet: it needs a base pipeline (--base)")
        try:
            return load_quantized_unet(base, artifact.path)
        except QuantizeError as err:
            raise MethodError(str(err)) from err

    def apply_in_stack(self, artifact: Artifact, pipe: Any) -> Any:
        """The file's integer weights are the base's own: read as they are, they would undo the stack's
        earlier components. So the UNet those components leave (their LoRAs fused into its weights) is
        quantized here, each layer at the artifact's bits and group size, with the artifact's activation
        scales (calibrated on the base: how the edits move the activations is not in them)."""
        from hubkit.pipelines.quantize import load_quantized_unet

        try:
            return load_quantized_unet(fuse_adapters(pipe), artifact.path, requantize=True)
        except QuantizeError as err:
            raise MethodError(str(err)) from err

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        return [("shapes-fidelity", {})]

    def demo_artifacts(self) -> list[DemoArtifact]:
        """W8A8 and W4A8 UNets of the demo base, quantized with the defaults when ``make demo`` runs
        (calibration takes a minute or two: nothing is shipped); the base's quality row beside them."""
        quality = DemoArtifact.suites(("shapes-quality", {}))
        return [
            DemoArtifact("tiny-sd-shapes-w8a8", QuantizeConfig(weights="int8"), quality),
            DemoArtifact("tiny-sd-shapes-w4a8", QuantizeConfig(weights="int4"), quality),
        ]

    def train(
        self, base: str, config: QuantizeConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Calibrate on the base's own trajectories, quantize, write ``out`` (``unet/`` in SDNQ's format +
        activation scales, ``hubkit.json``, card) whole or not at all."""
        from hubkit.layers import adaptable_layers
        from hubkit.training import start_training

        from .calibrate import calibrate
        from .card import quantize_card
        from .model import quantize_weights
        from .sensitivity import layer_sensitivity, pick_int8_layers
        from .serialization import check_sdnq_folder, save_activation_scales, save_sdnq_unet

        job = start_training(self.name, base, config, out, error=QuantizeError, **options)
        unet = getattr(job.pipe, "unet", None)
        if unet is None or type(unet).__name__ != "UNet2DConditionModel":
            raise QuantizeError(
                f"{base} has no UNet2DConditionModel to quantize ({type(unet).__name__} found)"
            )
        layers = adaptable_layers(unet)
        for flag, named in (("--keep-float", config.keep_float), ("--int8", config.int8_layers)):
            unknown = sorted(set(named) - set(layers))
            if unknown:
                raise QuantizeError(f"{flag} names no Linear/Conv2d of the UNet: {', '.join(unknown)}")
        float_bytes = sum(p.numel() * p.element_size() for p in unet.parameters())
        start = time.perf_counter()
        prompts = calibration_prompts(config, job.endpoint, job.token)
        stats = calibrate(
            job.pipe, layers, prompts, steps=config.calibration_steps,
            timestep_groups=config.timestep_groups, seed=config.seed, progress=options.get("progress", True),
        )  # fmt: skip
        int8 = [p for p in config.int8_layers if p not in config.keep_float] if config.bits < 8 else []
        quantized = quantize_weights(
            layers, config.bits, config.groups, stats=stats, keep_float=config.keep_float,
            int8_layers=int8, clip_search=config.clip_search,
        )  # fmt: skip
        sensitive: dict[str, float] = {}
        if config.bits < 8 and config.int8_budget > 0:
            sensitive = layer_sensitivity(unet, layers, quantized, stats, config.activations == "int8")
            measured = pick_int8_layers(sensitive, quantized, int(config.int8_budget * float_bytes))
            int8 += measured
            raised = {p: layers[p] for p in measured}
            quantized.update(quantize_weights(raised, 8, -1, stats=stats, clip_search=config.clip_search))
        seconds = time.perf_counter() - start
        facts = job.facts(
            sum(q.q.numel() for q in quantized.values()),
            sum(p.numel() for p in unet.parameters()),
            seconds,
            unet.device,
            weights=config.weights,
            activations=config.activations,
            group_size=config.groups,
            float_layers=sorted(set(layers) - set(quantized)),
            int8_layers=int8,
            most_sensitive={p: round(v, 6) for p, v in sorted(sensitive.items(), key=lambda kv: -kv[1])[:8]},
            calibration_prompts=len(prompts),
            timestep_bounds=stats.bounds,
            float_unet_bytes=float_bytes,
        )

        def save(folder):
            unet_dir = folder / SUBFOLDER
            save_sdnq_unet(unet, layers, quantized, unet_dir, config.bits, config.groups)
            check_sdnq_folder(unet_dir, {p: tuple(m.weight.shape) for p, m in layers.items()})
            if config.activations == "int8":
                scales = stats.scales()
                save_activation_scales(unet_dir, {p: scales[p] for p in quantized}, stats.bounds)
            info = {"method": self.name, "base_model": base, "facts": facts}
            (folder / "hubkit.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

        try:
            job.write(f"{SUBFOLDER}/{WEIGHTS_NAME}", save, quantize_card, facts)
        except QuantizedFileError as err:  # our own writer broke SDNQ's format: never publish that
            raise QuantizeError(f"the quantized UNet failed its own format check: {err}") from err
        return facts

    def summary(self, config: QuantizeConfig, facts: dict[str, Any]) -> str:
        ratio = facts["float_unet_bytes"] / facts["file_bytes"]
        return (
            f"W{config.bits}A{8 if config.activations == 'int8' else 32} UNet: {facts['file_bytes']:,} bytes "
            f"({ratio:.2f}× smaller than fp32), calibrated on {facts['calibration_prompts']} prompts, "
            f"{facts['train_seconds']:.0f} s"
        )
