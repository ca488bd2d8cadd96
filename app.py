"""Audio-Thinker studio: ``python app.py`` (also the Hugging Face Space entry point).

Environment: ``GRADIO_SERVER_PORT``, ``AUDIO_THINKER_MODEL`` (model folder or hub id; ``--model``),
``AUDIO_THINKER_DB`` (SQLAlchemy URL of the ratings store), ``AUDIO_THINKER_USERS`` (``user:pass,…`` or a
credentials file; without it the studio runs open, as annotator ``local``), ``AUDIO_THINKER_ADMINS``.
"""

from __future__ import annotations

import argparse
import os
import sys

try:  # on a ZeroGPU Space, run generation under @spaces.GPU; elsewhere nothing changes
    import spaces  # type: ignore[import-not-found]
except ImportError:
    spaces = None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder, hub id, or a GRPO run's final/")
    p.add_argument("--db", default=None, help="ratings database URL (default $AUDIO_THINKER_DB)")
    p.add_argument("--port", type=int, default=None, help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--host", default=None, help="server name, e.g. 0.0.0.0 (default $GRADIO_SERVER_NAME)")
    args = p.parse_args(argv)
    if args.model:
        os.environ["AUDIO_THINKER_MODEL"] = args.model
    if args.db:
        os.environ["AUDIO_THINKER_DB"] = args.db

    from app import studio
    from app.services import compare, model, state

    state.configure()
    if spaces is not None:
        compare.use_gpu_decorator(spaces.GPU)
    try:  # a model that cannot be loaded: one line saying why, not a stack trace
        model.check_model()
        model.warm_up()
    except state.UserError as err:
        sys.exit(f"app.py: cannot start the studio: {err}")
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        sys.exit(f"app.py: cannot start the studio: {model.model_name()} did not load ({reason[:300]})")
    overrides = {}
    if args.port:
        overrides["server_port"] = args.port
    if args.host:
        overrides["server_name"] = args.host
    studio.launch(**overrides)


if __name__ == "__main__":
    main()
