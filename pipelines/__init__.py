"""Diffusers pipelines and models of hubkit methods (imported as ``hubkit.pipelines``)."""
