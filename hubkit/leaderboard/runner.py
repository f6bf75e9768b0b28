"""Run a suite on a ready pipeline: generate its images with fixed seeds, judge them, compute its metrics.

Method-independent: the pipeline arrives with its method already applied (see :mod:`hubkit.methods`).
Images come out identical run after run: every image has its own seeded generator and the batches are cut
from a fixed order, so the numbers reproduce to float precision on the same machine and library versions.

Under ``accelerate launch --num_processes N`` the batches (whole ones, so each image is made in the same
batch as by one process) are dealt round-robin to the processes (``split_between_processes``), gathered
(``gather_object``) in their fixed order, and the main process judges them and computes the metrics: the
same values as one process. Timings are per batch, each measured by the process that made it (the method
and its baseline side by side, so their ratio holds; absolute seconds grow when processes share cores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hubkit.leaderboard.suite import MetricSpec, Prompt, Suite
from hubkit.metrics import load_metric, qualified_labels
from hubkit.processes import process_state
from hubkit.world import shapes

__all__ = ["SuiteResult", "run_suite"]


@dataclass(frozen=True)
class _Item:
    point: int
    group: str
    prompt: Prompt
    seed: int


@dataclass
class _Batch:
    items: list[_Item]
    images: np.ndarray  # (B, H, W, 3) uint8
    unet_rows: int  # UNet input rows over the whole call (classifier-free guidance doubles them)
    seconds: float
    baseline_seconds: float | None
    peak_memory_bytes: int
    baseline_images: np.ndarray | None = None  # the baseline's images of the same prompts and seeds
    attack: dict[str, Any] | None = None  # an attacked prompt's batch: what the attack found and spent


@dataclass
class SuiteResult:
    metrics: dict[str, float]
    details: dict[str, dict[str, Any]]
    samples: list[dict[str, Any]]
    settings: dict[str, Any]
    generation_seconds: float
    judge_seconds: float = 0.0
    points: list[dict[str, Any]] = field(default_factory=list)


def _items(suite: Suite) -> list[_Item]:
    return [
        _Item(point, group, prompt, seed)
        for point in range(len(suite.sweep_points()))
        for group, prompts in suite.groups.items()
        for prompt in prompts
        for seed in prompt.seeds
    ]


def _batches(items: list[_Item], size: int) -> Iterator[list[_Item]]:
    """Fixed-size batches that never mix sweep points (each point is one set of call settings)."""
    for point in sorted({i.point for i in items}):
        of_point = [i for i in items if i.point == point]
        for start in range(0, len(of_point), size):
            yield of_point[start : start + size]


def _by_prompt(items: list[_Item]) -> Iterator[list[_Item]]:
    """One batch per (sweep point, group, prompt): an attack runs once per prompt, for all its seeds."""
    keys: dict[tuple[int, str, str], list[_Item]] = {}
    for item in items:
        keys.setdefault((item.point, item.group, item.prompt.text), []).append(item)
    yield from keys.values()


class _UnetCounter:
    """Counts UNet input rows (one row = one image at one step, per guidance branch)."""

    def __init__(self, unet: torch.nn.Module):
        self.rows = 0
        self._handle = unet.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        self.rows += int(sample.shape[0])

    def close(self) -> None:
        self._handle.remove()


def _peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory, or the process's peak resident set on a CPU (Linux reports KiB)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _call(pipe, items: list[_Item], settings: dict[str, Any], **conditioning: Any) -> np.ndarray:
    """The items' images, each from its own seed; ``conditioning`` replaces the items' prompts."""
    generators = [torch.Generator("cpu").manual_seed(item.seed) for item in items]
    conditioning = conditioning or {"prompt": [i.prompt.text for i in items]}
    out = pipe(generator=generators, output_type="np", **conditioning, **settings)
    return (np.clip(out.images, 0.0, 1.0) * 255).round().astype(np.uint8)


ATTACK_IMAGES = 8
"""Real images of an attacked prompt's pair that the attack's denoising loss reads."""


def _attacked_batch(pipe, suite: Suite, items: list[_Item], settings: dict[str, Any], counter) -> _Batch:
    """One attacked prompt: the attack (seeded by the suite and the prompt's place in its group), then its
    seeds' images under the conditioning found. The attack's UNet rows are counted apart from the images'."""
    from hubkit.leaderboard.attacks import attack_prompt

    item = items[0]
    spec = suite.attacks[item.group]
    spec = dataclasses.replace(spec, seed=spec.seed + suite.groups[item.group].index(item.prompt))
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = _reference_images([item.prompt], ATTACK_IMAGES, spec.seed, size)
    before = counter.rows
    found = attack_prompt(pipe, item.prompt.text, images, spec)
    attack_rows = counter.rows - before
    start = time.perf_counter()
    generated = _call(pipe, items, settings, **found.call_kwargs(len(items)))
    seconds = time.perf_counter() - start
    attack = {
        "prompt": found.prompt if found.prompt_embeds is None else f"soft prompt from {found.prompt!r}",
        "unet_evals": attack_rows,
        "loss": [round(found.loss_before, 5), round(found.loss_after, 5)],
    }
    rows = counter.rows - before - attack_rows
    device = torch.device(getattr(pipe, "device", "cpu"))
    return _Batch(items, generated, rows, seconds, None, _peak_memory_bytes(device), attack=attack)


def _work(suite: Suite) -> list[tuple[bool, list[_Item]]]:
    """The suite's generation work in its fixed order: (attacked?, items) per attacked prompt, then the
    plain batches."""
    items = _items(suite)
    attacked = _by_prompt([i for i in items if i.group in suite.attacks])
    plain = _batches([i for i in items if i.group not in suite.attacks], suite.batch_size)
    return [(True, chunk) for chunk in attacked] + [(False, chunk) for chunk in plain]


def _generate(
    pipe, suite: Suite, method_settings: dict[str, Any], baseline_pipe, progress: bool
) -> tuple[list[_Batch], list[dict[str, Any]]]:
    """Every batch of the suite, in its fixed order; under ``accelerate launch`` each process makes its share
    (batches n, n + N, ...: sweep points of unequal cost spread evenly) and every process gets them all."""
    from accelerate.utils import gather_object

    state = process_state()
    points = [{**suite.call_settings, **method_settings, **point} for point in suite.sweep_points()]
    work = list(enumerate(_work(suite)))
    dealt = [unit for r in range(state.num_processes) for unit in work[r :: state.num_processes]]
    with state.split_between_processes(dealt) as mine:  # contiguous slices of dealt: work[r::N]
        made = _make(pipe, suite, mine, points, baseline_pipe, progress and state.is_main_process)
    if state.num_processes > 1:
        made = sorted(gather_object(made), key=lambda done: done[0])
    return [batch for _, batch in made], points


def _make(
    pipe,
    suite: Suite,
    work: list[tuple[int, tuple[bool, list[_Item]]]],
    points: list[dict[str, Any]],
    baseline_pipe,
    progress: bool,
) -> list[tuple[int, _Batch]]:
    """The batches of ``work``, each with its place in the suite's order."""
    baseline = {**suite.call_settings, **(suite.baseline or {})} if suite.baseline else None
    device = torch.device(getattr(pipe, "device", "cpu"))
    counter = _UnetCounter(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    if baseline_pipe is not None:
        baseline_pipe.set_progress_bar_config(disable=True)
    made = []
    total = sum(len(chunk) for _, (_, chunk) in work)
    bar = tqdm(total=total, desc=f"{suite.key}: generating", unit="img", disable=not progress)
    try:
        for n, (attacked, chunk) in work:
            settings = points[chunk[0].point]
            if attacked:
                made.append((n, _attacked_batch(pipe, suite, chunk, settings, counter)))
                bar.update(len(chunk))
                continue
            rows_before = counter.rows
            start = time.perf_counter()
            images = _call(pipe, chunk, settings)
            seconds = time.perf_counter() - start
            rows = counter.rows - rows_before
            baseline_seconds = baseline_images = None
            if baseline is not None and baseline_pipe is not None:
                # Timed right after the method, batch by batch: machine noise hits both alike.
                start = time.perf_counter()
                baseline_images = _call(baseline_pipe, chunk, baseline)
                baseline_seconds = time.perf_counter() - start
            peak = _peak_memory_bytes(device)
            made.append((n, _Batch(chunk, images, rows, seconds, baseline_seconds, peak, baseline_images)))
            bar.update(len(chunk))
    finally:
        bar.close()
        counter.close()
    return made


def _reference_images(prompts: list[Prompt], per_prompt: int, seed: int, size: int) -> np.ndarray:
    """Real images of the prompts' (shape, colour) pairs, other attributes drawn at random from ``seed``."""
    rng = random.Random(seed)
    specs = [
        shapes.ShapeSpec(
            shape=p.labels["shape"],
            colour=p.labels["colour"],
            background=rng.choice(list(shapes.BACKGROUNDS)),
            size=rng.choice(shapes.SIZES),
            seed=rng.randrange(2**31),
        )
        for p in prompts
        for _ in range(per_prompt)
    ]
    return shapes.render_batch(specs, size=size)


class _Scorer:
    """Judges images once and feeds each metric the rows of its group."""

    def __init__(self, suite: Suite, judge, batches: list[_Batch]):
        self.suite, self.judge = suite, judge
        self.items = [item for b in batches for item in b.items]
        self.batches = batches
        images = np.concatenate([b.images for b in batches])
        self.size = images.shape[1]
        self.predictions = judge.predict(images)
        self.features = judge.features(images).cpu().numpy().astype(np.float64)
        self._metrics: dict[str, Any] = {}
        self._references: dict[tuple[str, int, int], np.ndarray] = {}

    def metric(self, name: str):
        if name not in self._metrics:
            self._metrics[name] = load_metric(name)
        return self._metrics[name]

    def batch_of(self, n: int) -> _Batch:
        """The batch that made image ``n`` of the run (in item order)."""
        item = self.items[n]
        return next(b for b in self.batches if item in b.items)

    def image(self, n: int, baseline: bool = False) -> np.ndarray:
        """Image ``n`` of the run (in item order), or the baseline's image of the same prompt and seed."""
        batch = self.batch_of(n)
        images = batch.baseline_images if baseline else batch.images
        return images[batch.items.index(self.items[n])]

    def rows(self, group: str, point: int) -> list[int]:
        return [n for n, item in enumerate(self.items) if item.group == group and item.point == point]

    def labels(self, rows: list[int], attributes: list[str]) -> tuple[list[str], list[str]]:
        predicted = {a: [self.predictions[a][n] for n in rows] for a in attributes}
        asked = {a: [self.items[n].prompt.labels[a] for n in rows] for a in attributes}
        return qualified_labels(predicted), qualified_labels(asked)

    def reference_features(self, spec: MetricSpec) -> np.ndarray:
        ref = spec.reference or {}
        key = (spec.group, int(ref.get("per_prompt", 16)), int(ref.get("seed", 0)))
        if key not in self._references:
            images = _reference_images(self.suite.groups[spec.group], key[1], key[2], self.size)
            self._references[key] = self.judge.features(images).cpu().numpy().astype(np.float64)
        return self._references[key]

    def compute(self, spec: MetricSpec, point: int, artifact_facts: dict[str, int]) -> dict[str, Any]:
        """Run ``spec``'s metric on its group at one sweep point, fed the inputs the suite names."""
        rows = self.rows(spec.group, point)
        context = _Rows(self, spec, point, rows, artifact_facts)
        inputs = {argument: context.source(name) for argument, name in spec.inputs.items()}
        spread = inputs.pop("**", {})
        compute: Callable[..., dict[str, Any]] = self.metric(spec.metric).compute
        return compute(**inputs, **spread, **spec.args)


@dataclass
class _Rows:
    """The rows one metric spec reads at one sweep point, and every input source over them."""

    scorer: _Scorer
    spec: MetricSpec
    point: int
    rows: list[int]
    artifact_facts: dict[str, int]

    def source(self, name: str) -> Any:
        read = getattr(self, f"_{name}", None)
        if read is None:
            raise ValueError(f"metric {self.spec.metric}: no input source {name!r}")
        return read()

    @property
    def _attributes(self) -> list[str]:
        return list(self.scorer.items[self.rows[0]].prompt.labels)

    def _judged_labels(self) -> list[str]:
        return self.scorer.labels(self.rows, self._attributes)[0]

    def _asked_labels(self) -> list[str]:
        return self.scorer.labels(self.rows, self._attributes)[1]

    def _features(self) -> np.ndarray:
        return self.scorer.features[self.rows]

    def _reference_features(self) -> np.ndarray:
        return self.scorer.reference_features(self.spec)

    def _images(self) -> list[np.ndarray]:
        return [self.scorer.image(n) for n in self.rows]

    def _baseline_images(self) -> list[np.ndarray]:
        self._check_baseline("paired reference images")
        return [self.scorer.image(n, baseline=True) for n in self.rows]

    @property
    def _batches(self) -> list[_Batch]:
        return [b for b in self.scorer.batches if b.items[0].point == self.point]

    def _check_baseline(self, what: str) -> None:
        if any(b.baseline_seconds is None for b in self._batches):
            raise ValueError(
                f"suite {self.scorer.suite.name}: metric {self.spec.metric} needs a 'baseline' in the suite "
                f"({what})"
            )

    def _unet_evals(self) -> list[float]:
        return [b.unet_rows / len(b.items) for b in self._batches]

    def _wall_time_s(self) -> list[float]:
        return [b.seconds for b in self._batches]

    def _baseline_wall_time_s(self) -> list[float]:
        self._check_baseline("baseline timings")
        return [b.baseline_seconds for b in self._batches]

    def _peak_memory_bytes(self) -> list[int]:
        return [b.peak_memory_bytes for b in self._batches]

    def _attack_unet_evals(self) -> list[float]:
        found = [self.scorer.batch_of(n).attack for n in self.rows]
        if any(a is None for a in found):
            raise ValueError(f"metric {self.spec.metric}: the suite does not attack group {self.spec.group}")
        return [float(a["unet_evals"]) for a in found]

    def _artifact_facts(self) -> dict[str, int]:
        return dict(self.artifact_facts)


def _column(name: str, point: dict[str, Any], swept: bool) -> str:
    return f"{name}@{next(iter(point.values()))}" if swept else name


def _samples(scorer: _Scorer, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for n, item in enumerate(scorer.items):
        image = scorer.image(n)
        rows.append(
            {
                "group": item.group,
                "prompt": item.prompt.text,
                "seed": item.seed,
                "settings": ", ".join(f"{k}={v}" for k, v in points[item.point].items()),
                **{f"asked_{k}": v for k, v in item.prompt.labels.items()},
                **{f"judged_{k}": scorer.predictions[k][n] for k in scorer.predictions},
                "image_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
            }
        )
    return rows


def _attack_settings(suite: Suite, batches: list[_Batch]) -> dict[str, Any]:
    """Per attacked group: the attack's settings and, per prompt, what it found and its loss before/after."""
    found: dict[str, Any] = {
        group: {**dataclasses.asdict(spec), "found": {}} for group, spec in suite.attacks.items()
    }
    for batch in batches:
        if batch.attack is not None:
            found[batch.items[0].group]["found"][batch.items[0].prompt.text] = batch.attack
    return found


def run_suite(
    pipe,
    suite: Suite,
    judge,
    *,
    method_settings: dict[str, Any] | None = None,
    baseline_pipe=None,
    artifact_facts: dict[str, int] | None = None,
    progress: bool = True,
) -> SuiteResult | None:
    """Generate the suite's images with ``pipe``, judge them and compute every metric of the suite.

    ``method_settings`` (from the method) override the suite's call settings, except swept ones;
    ``baseline_pipe`` is timed batch by batch beside ``pipe`` when the suite has a ``baseline``.

    Under ``accelerate launch`` every process generates its share of the batches and the main process
    judges and computes the result; the other processes return None (``judge`` may be None there).
    """
    state = process_state()
    start = time.perf_counter()
    batches, points = _generate(pipe, suite, method_settings or {}, baseline_pipe, progress)
    generation_seconds = time.perf_counter() - start
    if not state.is_main_process:
        return None
    start = time.perf_counter()
    scorer = _Scorer(suite, judge, batches)
    swept = bool(suite.sweep)
    metrics: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    for p, swept_setting in enumerate(suite.sweep_points()):
        for spec in suite.metrics:
            values = scorer.compute(spec, p, artifact_facts or {})
            details[_column(f"{spec.metric}/{spec.group}", swept_setting, swept)] = values
            for key, column in spec.outputs.items():
                if key not in values:
                    raise ValueError(f"metric {spec.metric} gave no {key!r} (it gave {sorted(values)})")
                metrics[_column(column, swept_setting, swept)] = float(values[key])
        of_point = [b for b in batches if b.items[0].point == p]
        evals = sum(b.unet_rows for b in of_point) / sum(len(b.items) for b in of_point)
        metrics.setdefault(_column("unet_evals", swept_setting, swept), float(evals))
    settings = {
        "batch_size": suite.batch_size,
        "images": len(scorer.items),
        "scheduler": type(pipe.scheduler).__name__,
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "device": str(torch.device(getattr(pipe, "device", "cpu"))),
        **({"processes": state.num_processes} if state.num_processes > 1 else {}),
        **({"sweep": suite.sweep} if swept else {}),
        **(points[0] if not swept else {k: v for k, v in points[0].items() if k not in suite.sweep}),
        **({"baseline": suite.baseline} if suite.baseline else {}),
        **({"attacks": _attack_settings(suite, batches)} if suite.attacks else {}),
    }
    return SuiteResult(
        metrics=metrics,
        details=details,
        samples=_samples(scorer, points),
        settings=settings,
        generation_seconds=generation_seconds,
        judge_seconds=time.perf_counter() - start,
        points=points,
    )
