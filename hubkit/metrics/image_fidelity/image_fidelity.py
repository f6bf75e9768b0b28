"""Paired image fidelity: PSNR and SSIM between images generated from the same prompt and seed.

Typical use: a quantized (or otherwise approximated) model's images (``predictions``) against the full
precision model's (``references``). Images are ``datasets.Image`` features: PIL images, uint8 (H, W, 3)
arrays or paths; they are compared as 8-bit RGB on the [0, 255] range.
"""

import datasets
import evaluate
import numpy as np
import scipy.ndimage

PSNR_CAP_DB = 100.0
"""PSNR of identical images (MSE = 0) is infinite; it is reported as this cap so results stay valid JSON."""

_DESCRIPTION = """\
Mean and median per-pair PSNR (dB, data range 255) and mean SSIM (Wang et al. 2004: 11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03, per RGB channel then averaged, valid region only; equal to scikit-image's
structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)).
Identical pairs have infinite PSNR; each is counted at the 100 dB cap and `identical` gives their share.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of images): approximated images (PIL, uint8 HxWx3 arrays or paths).
    references (list of images): reference images of the same size, same prompts and seeds, same order.
Returns:
    psnr (float): mean per-pair PSNR in dB, each pair capped at 100 dB (identical images).
    psnr_median (float): the median pair's PSNR (a few pairs whose trajectories diverge move the mean a lot).
    psnr_min (float): the worst pair's PSNR.
    ssim (float): mean per-pair SSIM in [-1, 1] (1 for identical images).
    identical (float): share of pairs that are pixel-identical.
    n (int): number of pairs.
Examples:
    >>> m = evaluate.load("image_fidelity.py")
    >>> m.compute(predictions=[img], references=[img])
    {'psnr': 100.0, 'psnr_median': 100.0, 'psnr_min': 100.0, 'ssim': 1.0, 'identical': 1.0, 'n': 1}
"""

_CITATION = """\
@article{wang2004image,
  title={Image quality assessment: from error visibility to structural similarity},
  author={Wang, Zhou and Bovik, Alan C and Sheikh, Hamid R and Simoncelli, Eero P},
  journal={IEEE Transactions on Image Processing},
  year={2004}
}
"""

_DATA_RANGE = 255.0
_SIGMA = 1.5
_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11x11 window
_PAD = 5


def _as_rgb(image):
    if hasattr(image, "convert"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {array.shape}")
    return array.astype(np.float64)


def psnr(x, y):
    """PSNR in dB of two float arrays on [0, 255]; PSNR_CAP_DB when they are identical."""
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(10.0 * np.log10(_DATA_RANGE**2 / mse), PSNR_CAP_DB))


def ssim(x, y):
    """Mean SSIM of two (H, W, C) float arrays on [0, 255], per channel, valid region of the window."""
    if min(x.shape[:2]) < 2 * _PAD + 1:
        raise ValueError(
            f"SSIM needs images of at least {2 * _PAD + 1}x{2 * _PAD + 1} pixels, got {x.shape[:2]}"
        )
    c1, c2 = (0.01 * _DATA_RANGE) ** 2, (0.03 * _DATA_RANGE) ** 2
    values = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch], y[..., ch]

        def blur(z):
            return scipy.ndimage.gaussian_filter(z, sigma=_SIGMA, truncate=_TRUNCATE, mode="reflect")

        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a * mu_a
        var_b = blur(b * b) - mu_b * mu_b
        cov = blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        values.append(s[_PAD:-_PAD, _PAD:-_PAD].mean())
    return float(np.mean(values))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ImageFidelity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()}),
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("image_fidelity needs at least one (prediction, reference) pair")
        psnrs, ssims, identical = [], [], 0
        for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
            x, y = _as_rgb(pred), _as_rgb(ref)
            if x.shape != y.shape:
                raise ValueError(f"pair {i}: image sizes differ, {x.shape} vs {y.shape}")
            identical += bool(np.array_equal(x, y))
            psnrs.append(psnr(x, y))
            ssims.append(ssim(x, y))
        return {
            "psnr": float(np.mean(psnrs)),
            "psnr_median": float(np.median(psnrs)),
            "psnr_min": float(np.min(psnrs)),
            "ssim": float(np.mean(ssims)),
            "identical": identical / len(psnrs),
            "n": len(psnrs),
        }
