"""Prompt alignment: how often a judge reads, in each image, the attribute value the prompt asked for.

Inputs are labels, not images, so the metric knows nothing about methods, models or judges:

- ``predictions``: what a judge (any classifier) read in each image, one string per (image, attribute).
- ``references``: what the prompt requested, one string per (image, attribute), same order.

Labels are either qualified, ``"colour=red"`` (several attributes in one call; the score is also given per
attribute), or plain, ``"red"`` (one attribute, named by the ``attribute`` keyword, default ``"label"``).
"""

import collections

import datasets
import evaluate

_DESCRIPTION = """\
Share of (image, attribute) rows where the label a judge read in the image equals the label the prompt
requested. Labels are "attribute=value" strings (or plain values with `attribute=` naming the attribute).
Returns `alignment` (all rows), `alignment_<attribute>` per attribute and `n` (rows).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): labels a judge read, e.g. ["colour=red", "shape=circle", ...].
    references (list of str): labels the prompts requested, same length and order.
    attribute (str, optional): attribute name for plain (unqualified) labels; default "label".
Returns:
    alignment (float): share of rows where prediction == reference, in [0, 1].
    alignment_<attribute> (float): the same, for the rows of one attribute.
    n (int): number of rows.
Examples:
    >>> m = evaluate.load("prompt_alignment.py")
    >>> m.compute(predictions=["colour=red", "shape=circle"], references=["colour=red", "shape=square"])
    {'alignment': 0.5, 'alignment_colour': 1.0, 'alignment_shape': 0.0, 'n': 2}
"""

_CITATION = ""


def _split(label, default):
    attribute, sep, value = str(label).partition("=")
    return (attribute, value) if sep else (default, str(label))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PromptAlignment(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, attribute="label"):
        if len(predictions) == 0:
            raise ValueError("prompt_alignment needs at least one (prediction, reference) pair")
        hits = collections.Counter()
        totals = collections.Counter()
        for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
            pred_attr, pred_value = _split(pred, attribute)
            ref_attr, ref_value = _split(ref, attribute)
            if pred_attr != ref_attr:
                raise ValueError(
                    f"row {i}: prediction {pred!r} and reference {ref!r} name different attributes "
                    f"({pred_attr!r} vs {ref_attr!r}); pass rows in the same order"
                )
            totals[ref_attr] += 1
            hits[ref_attr] += pred_value == ref_value
        result = {"alignment": sum(hits.values()) / sum(totals.values())}
        for name in sorted(totals):
            result[f"alignment_{name}"] = hits[name] / totals[name]
        result["n"] = sum(totals.values())
        return result
