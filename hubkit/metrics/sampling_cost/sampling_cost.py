"""Sampling cost: UNet evaluations, wall time as a ratio to a baseline timed in the same run, memory, size.

One row per timed run (e.g. one batch of images): ``unet_evals``, ``wall_time_s``, ``baseline_wall_time_s``
(the baseline timed in the same run, interleaved, so machine noise cancels in the ratio) and
``peak_memory_bytes``. Per-artifact constants (``artifact_bytes``, ``parameters``) are compute keywords.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Cost of sampling with a method, measured side by side with a baseline in the same run: `time_ratio` is
the median over runs of wall_time_s / baseline_wall_time_s (< 1 means faster than the baseline). Also
reports median times, mean UNet evaluations, peak memory, and the artifact's size and parameter count.
"""

_KWARGS_DESCRIPTION = """
Args:
    unet_evals (list of int): UNet forward passes per image (classifier-free guidance counts 2 per step).
    wall_time_s (list of float): seconds per run with the method, > 0.
    baseline_wall_time_s (list of float): seconds per run of the baseline in the same run, > 0.
    peak_memory_bytes (list of int): peak memory per run (-1 if unknown).
    artifact_bytes (int, optional): size of the method's artifact on disk.
    parameters (int, optional): parameters of the method's artifact.
Returns:
    time_ratio (float): median of per-run wall_time_s / baseline_wall_time_s.
    wall_time_s (float), baseline_wall_time_s (float): medians.
    unet_evals (float): mean UNet evaluations per image.
    peak_memory_bytes (int): max over runs (-1 if unknown).
    artifact_bytes (int), parameters (int): as given (-1 if not given).
    n (int): number of runs.
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SamplingCost(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "unet_evals": datasets.Value("int64"),
                    "wall_time_s": datasets.Value("float64"),
                    "baseline_wall_time_s": datasets.Value("float64"),
                    "peak_memory_bytes": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self,
        unet_evals,
        wall_time_s,
        baseline_wall_time_s,
        peak_memory_bytes,
        artifact_bytes=-1,
        parameters=-1,
    ):
        wall = np.asarray(wall_time_s, dtype=np.float64)
        base = np.asarray(baseline_wall_time_s, dtype=np.float64)
        if wall.size == 0:
            raise ValueError("sampling_cost needs at least one run")
        if (wall <= 0).any() or (base <= 0).any() or not np.isfinite(np.concatenate([wall, base])).all():
            raise ValueError("wall_time_s and baseline_wall_time_s must be positive and finite")
        return {
            "time_ratio": float(np.median(wall / base)),
            "wall_time_s": float(np.median(wall)),
            "baseline_wall_time_s": float(np.median(base)),
            "unet_evals": float(np.mean(np.asarray(unet_evals, dtype=np.float64))),
            "peak_memory_bytes": int(np.max(np.asarray(peak_memory_bytes, dtype=np.int64))),
            "artifact_bytes": int(artifact_bytes),
            "parameters": int(parameters),
            "n": int(wall.size),
        }
