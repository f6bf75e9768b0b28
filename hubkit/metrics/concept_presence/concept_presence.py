"""Concept presence: how often a judge reads a given concept (e.g. ``colour=red``) in a set of images.

Inputs are labels, not images, so the metric knows nothing about methods, models or judges:
``predictions`` are what a judge read, one string per (image, attribute), qualified (``"colour=red"``) or
plain (``"red"``); ``concept`` (a compute keyword) is the label to count.
"""

import datasets
import evaluate

_DESCRIPTION = """\
Share of images in which a judge reads a concept. With qualified labels ("colour=red") and a qualified
concept, only the rows of that attribute count (one per image); otherwise every row counts. Use it for
concept erasure (presence of the erased concept should drop to 0) and preservation (presence of other
concepts should stay).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): labels a judge read, e.g. ["colour=red", "colour=blue", ...].
    concept (str): the label to count, e.g. "colour=red" (or "red" for plain labels).
Returns:
    presence (float): share of rows showing the concept, in [0, 1].
    count (int): rows showing the concept.
    n (int): rows considered.
Examples:
    >>> m = evaluate.load("concept_presence.py")
    >>> m.compute(predictions=["colour=red", "colour=blue", "shape=circle"], concept="colour=red")
    {'presence': 0.5, 'count': 1, 'n': 2}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConceptPresence(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, concept=None):
        if not concept or not isinstance(concept, str):
            raise ValueError("concept_presence needs concept=, a label such as 'colour=red'")
        labels = [str(p) for p in predictions]
        attribute, sep, _ = concept.partition("=")
        if sep:
            qualified = [p for p in labels if "=" in p]
            if qualified:
                labels = [p for p in qualified if p.partition("=")[0] == attribute]
            else:  # plain labels: compare the value only
                concept = concept.partition("=")[2]
        if not labels:
            raise ValueError(f"no prediction rows for attribute {attribute!r} of concept {concept!r}")
        count = sum(p == concept for p in labels)
        return {"presence": count / len(labels), "count": count, "n": len(labels)}
