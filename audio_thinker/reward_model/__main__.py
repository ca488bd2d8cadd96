"""``python -m audio_thinker.reward_model``: the command line (:mod:`audio_thinker.reward_model.cli`)."""

import sys

from .cli import main

sys.exit(main())
