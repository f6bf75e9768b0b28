"""``hubkit metrics publish``: each metric folder as a Space repo, for ``evaluate.load("ns/name")``."""

from __future__ import annotations

from hubkit.hub import PublishResult, publish
from hubkit.metrics import METRICS, metric_path


def publish_metrics(
    endpoint: str | None = None,
    token: str | None = None,
    namespace: str = "hubkit",
    names: list[str] | None = None,
) -> list[PublishResult]:
    """Publish the metric modules (card-checked, idempotent: unchanged files make no commit)."""
    results = []
    for name in names or list(METRICS):
        folder = metric_path(name).parent
        results.append(
            publish(
                folder,
                f"{namespace}/{name}",
                repo_type="space",
                endpoint=endpoint,
                token=token,
                message=f"Publish the {name} metric",
            )
        )
    return results
