"""dltrain: a config-driven PyTorch training CLI."""

__version__ = "0.1.0"
