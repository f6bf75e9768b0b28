"""Jinja model-card templates, one per artifact kind (imported as ``hubkit.model_cards``)."""
