"""The fast-sampling Space against the embedded Hub: an LCM-LoRA distilled here from alice's base model and
published with it, the teacher and the student timed side by side through ``/generate`` with gradio_client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import publish_tiny_lcm_lora, running_space, third_party_imports
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

pytestmark = [pytest.mark.integration]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "fast-sampling"
BASE = "alice/tiny-sd-shapes"
LORA, MISFIT = "alice/lcm-lora-shapes", "alice/lcm-lora-other-unet"
SHOWN = (256, 256)  # 32×32 images upscaled ×8


def widen(folder: Path) -> None:
    """Turn the LoRA of ``folder`` into one for another UNet: each ``lora_A`` twice as wide as its layer."""
    from hubkit.adapters.lcm_lora import WEIGHT_NAME
    from safetensors import safe_open
    from safetensors.torch import save_file

    file = folder / WEIGHT_NAME
    with safe_open(str(file), framework="pt") as weights:
        metadata = weights.metadata()
        tensors = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118 (no __iter__)
    wide = {name: torch.cat([t, t], dim=1) if "lora_A" in name else t for name, t in tensors.items()}
    save_file(wide, str(file), metadata=metadata)


@pytest.fixture(scope="module")
def space(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The Space reading the test Hub with alice's token, opening with her LoRA; its URL and log. No
    ``HUBKIT_BASE_REPO``: the base model must come from the LoRA's card."""
    publish_tiny_lcm_lora(hub, tmp_path_factory.mktemp("lcm"), LORA, {MISFIT: widen})
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_LCM_REPO": LORA,
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine: one torch thread is ~10x faster than two here
    }
    with running_space(tmp_path_factory.mktemp("space"), env, "fast-sampling") as url_and_log:
        yield url_and_log


@pytest.fixture(scope="module")
def client(space) -> Client:
    return Client(space[0], verbose=False)


def image(path: str | dict) -> np.ndarray:
    """An output image as an array (gradio_client hands back a local PNG file)."""
    with Image.open(path if isinstance(path, str) else path["path"]) as img:
        assert img.format == "PNG" and img.size == SHOWN, (img.format, img.size)
        return np.asarray(img.convert("RGB"))


def table_rows(table: dict) -> dict[str, dict]:
    """The timing table's rows by role (teacher, student)."""
    rows = [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]
    return {row["role"]: row for row in rows}


def test_app_imports_only_what_the_space_installs():
    from hubkit.cards import check_folder

    third_party = third_party_imports(SPACE / "app.py")
    assert third_party == {"gradio", "pandas", "diffusers", "PIL", "hubkit"}
    requirements = set((SPACE / "requirements.txt").read_text().split())
    assert third_party - {"gradio", "PIL"} | {"pillow", "peft"} <= requirements  # gradio: the sdk's
    assert check_folder(SPACE, repo_type="space") == []
    card = (SPACE / "README.md").read_text()
    assert "- hubkit/tiny-sd-shapes\n" in card and "- hubkit/lcm-lora-shapes\n" in card
    assert 'api_name="/generate"' in card


def test_generate_times_teacher_and_student_side_by_side(client):
    teacher, student, table, status = client.predict("a red circle", 2, 25, 0, LORA, "", api_name="/generate")
    teacher, student = image(teacher), image(student)
    assert not np.array_equal(teacher, student)  # other scheduler, steps and guidance: another image
    rows = table_rows(table)
    assert list(rows) == ["teacher", "student"]
    assert rows["teacher"]["model"] == BASE and rows["student"]["model"] == f"{BASE} + {LORA}"
    assert rows["student"]["scheduler"] == "LCMScheduler" != rows["teacher"]["scheduler"]
    assert (rows["teacher"]["steps"], rows["teacher"]["guidance"]) == (25, 7.5)
    assert (rows["student"]["steps"], rows["student"]["guidance"]) == (2, 1.0)  # the slider's value
    assert all(row["seconds"] > 0 for row in rows.values())
    # 50 UNet passes (25 steps, guided) against 2: the student is faster even on a busy machine.
    assert rows["student"]["seconds"] < rows["teacher"]["seconds"]
    ratio = rows["teacher"]["seconds"] / rows["student"]["seconds"]
    assert "faster" in status and f"base `{BASE}` (from the LoRA's card)" in status and "seed 0" in status
    shown = re.search(r"Student \*\*([0-9.]+)× faster\*\*", status)
    assert shown and float(shown[1]) == pytest.approx(ratio, rel=0.05, abs=0.06), (status, ratio)


def test_student_steps_follow_the_slider_and_the_seed_fixes_the_noise(client):
    """Each steps value of the slider is the student's steps; the same seed gives the same images; an
    empty LoRA is the Space's default and a typed base model is used as typed."""
    images = {}
    for steps in (1, 8):
        teacher, student, table, status = client.predict(
            "a blue square", steps, 3, 7, "", BASE, api_name="/generate"
        )
        rows = table_rows(table)
        assert rows["student"]["steps"] == steps and rows["teacher"]["steps"] == 3
        assert rows["student"]["model"] == f"{BASE} + {LORA}"
        assert f"base `{BASE}` (typed)" in status
        images[steps] = image(teacher), image(student)
    assert np.array_equal(images[1][0], images[8][0])  # the teacher, same seed and settings
    assert not np.array_equal(images[1][1], images[8][1])  # the student at 1 and at 8 steps
    _, again, _, _ = client.predict("a blue square", 8, 3, 7, LORA, "", api_name="/generate")
    assert np.array_equal(image(again), images[8][1])


def test_bad_input_and_repos_are_clear_errors(client, space):
    with pytest.raises(AppError, match=r"Cannot load the LoRA `alice/no-such-lora`: no such repo"):
        client.predict("a red circle", 4, 2, 0, "alice/no-such-lora", "", api_name="/generate")
    with pytest.raises(AppError, match=rf"The LoRA `{MISFIT}` does not fit the base model `{BASE}`"):
        client.predict("a red circle", 4, 2, 0, MISFIT, "", api_name="/generate")
    with pytest.raises(AppError, match=r"Cannot load the base model `alice/no-such-base`"):
        client.predict("a red circle", 4, 2, 0, LORA, "alice/no-such-base", api_name="/generate")
    with pytest.raises(AppError, match=r"`not a repo` is not a valid LoRA repo id"):
        client.predict("a red circle", 4, 2, 0, "not a repo", "", api_name="/generate")
    with pytest.raises(AppError, match="Enter a prompt"):
        client.predict("  ", 4, 2, 0, LORA, "", api_name="/generate")
    # Nothing was left half-loaded: the LoRA still works after the failures.
    _, _, table, _ = client.predict("a red circle", 4, 2, 0, LORA, "", api_name="/generate")
    rows = table_rows(table)
    assert rows["student"]["scheduler"] == "LCMScheduler" and rows["student"]["steps"] == 4
    assert "Traceback" not in space[1].read_text()
    # Steps out of the slider's range (only the API can send them): gradio's own check refuses them (and,
    # being gradio's, logs its traceback).
    with pytest.raises(AppError, match="greater than maximum value 8"):
        client.predict("a red circle", 9, 2, 0, LORA, "", api_name="/generate")
