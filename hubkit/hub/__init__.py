"""Client side: endpoint choice and publish / pull of artifacts, all through huggingface_hub."""

from hubkit.hub.endpoint import Endpoint, HubError, ensure_embedded_hub, resolve_endpoint, resolve_token
from hubkit.hub.transfer import PublishResult, local_or_snapshot, publish, pull, pull_pipeline

__all__ = [
    "Endpoint",
    "HubError",
    "PublishResult",
    "ensure_embedded_hub",
    "local_or_snapshot",
    "publish",
    "pull",
    "pull_pipeline",
    "resolve_endpoint",
    "resolve_token",
]
