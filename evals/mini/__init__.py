"""The mini world's trained models: a small video model (VGM) and a small VLM scorer.

Both are real model classes (diffusers Wan, transformers Qwen-VL) at tiny
sizes, trained on the mini-world task suite by scripts in this package, with
their weights shipped under `evals/mini/weights/`. See docs/mini-models.md.
"""
