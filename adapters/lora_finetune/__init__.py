"""LoRA fine-tuning: a peft LoRA on the UNet taught new images with the standard denoising loss (as diffusers'
``train_text_to_image_lora.py`` / DreamBooth-LoRA), saved as a plain diffusers LoRA file. The baseline every
sparse or low-rank fine-tuning method is compared with."""
