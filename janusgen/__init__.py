"""janusgen: one encoder-decoder that generates autoregressively and non-autoregressively (JANUS)."""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy, so that `import janusgen` stays cheap for the CLI
    if name == "Translator":
        from janusgen.decoding.translator import Translator

        return Translator
    raise AttributeError(name)
