"""The Audio-Thinker studio (Gradio). One module per tab; ``service`` is the only door into ``audio_thinker``."""
