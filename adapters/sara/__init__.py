"""SaRA (progressive sparse low-rank adaptation): fine-tune only the base weights whose magnitude is below a
threshold, as a peft-style sparse tuner on Linear and Conv2d layers.
Hu et al., ICLR 2025, arXiv 2409.06633."""
