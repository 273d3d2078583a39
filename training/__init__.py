"""Training module: xLAM data → Hammer training data (irrelevance augmentation, function
masking, the server's own prompt format) → LoRA fine-tuning → merged model → Q4_K_M GGUF.

Importing this package is cheap: torch, transformers, peft and trl are imported only by
the functions that train or export.
"""
