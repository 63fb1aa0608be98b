"""R50+ViT hybrid family: a BiT-style ResNet trunk as the patch embedding of ViT."""
