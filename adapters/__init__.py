"""PEFT-style adapters and their training recipes, one folder per method (imported as ``hubkit.adapters``)."""
