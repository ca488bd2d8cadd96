"""The Audio-Thinker studio (Gradio). One module per tab; ``app.services`` is the only door into ``audio_thinker``."""
