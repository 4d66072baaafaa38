"""Baseline image encoders of the paper's Table 2, each trained on the workspace's own tiles.

One module per baseline (pca, autoencoder, resnet, tile2vec, simclr_geo,
text_simclr); shared pixels loading, the small CNN and the training loops live
in `common`. They all produce an `Encoder` (see urbanclip.evaluation.encoders) whose
embeddings go through the same probe as UrbanCLIP.
"""
