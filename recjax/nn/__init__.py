"""Pure Flax Linen modules (encoders, decoders, sparse input layers) and likelihoods."""
