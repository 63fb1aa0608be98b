"""MAE (He et al. 2021): masked-autoencoder pre-training of a ViT encoder."""
