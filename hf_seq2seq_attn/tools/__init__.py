"""Tools on a trained model: loading and translating, metrics, alignments, attention plots, checkpoint
averaging, G2P, and the model card / Hub upload. They build on `core` only."""
