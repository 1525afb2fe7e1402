"""rnnkit's version (``rnnkit --version``, ``rnnkit.__version__``): one place, imported by nothing heavy."""
__version__ = "0.1.0"

__all__ = ["__version__"]
