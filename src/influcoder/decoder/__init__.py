"""The decoder side of labelling: a LoRA adapter and per-example gradients of its parameters."""
