"""janusgen: one encoder-decoder that generates autoregressively and non-autoregressively (JANUS)."""

__version__ = "0.1.0"
