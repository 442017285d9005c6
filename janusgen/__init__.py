"""janusgen: one encoder-decoder that generates autoregressively and non-autoregressively (JANUS)."""

from importlib.metadata import PackageNotFoundError, version

try:  # the one version source is pyproject.toml, as installed
    __version__ = version("janusgen")
except PackageNotFoundError:  # imported from a source tree that pip never installed
    __version__ = "0+unknown"


def __getattr__(name: str):  # lazy, so that `import janusgen` stays cheap for the CLI
    if name == "Translator":
        from janusgen.decoding.translator import Translator

        return Translator
    raise AttributeError(name)
