"""Audio-Thinker: teach audio language models when and how to think (arXiv 2508.08039)."""

__version__ = "0.1.0"
