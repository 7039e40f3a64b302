"""Flax modules of MusicVAE and GrooVAE: LSTM stacks, the encoder, decoders, the VAE."""
