"""Training AlacGAN-style colorizers on openly licensed art (`python -m training`)."""
