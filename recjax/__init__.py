"""recjax: a JAX functional model zoo for autoencoder, recurrent and factor recommenders."""

__version__ = "0.1.0"
