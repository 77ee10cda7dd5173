"""The flow: train -> compress -> deploy, each stage reused when its output exists."""
