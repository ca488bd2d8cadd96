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


def _port_taken(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be bound now (another server listens there)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a closing socket is free
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder, hub id, or a GRPO run's final/")
    p.add_argument(
        "--db", default=None, help="ratings database URL or SQLite file (default $AUDIO_THINKER_DB)"
    )
    p.add_argument("--port", type=int, default=None, help="port (default $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--host", default=None, help="server name, e.g. 0.0.0.0 (default $GRADIO_SERVER_NAME)")
    args = p.parse_args(argv)
    port_flag = (
        f"--port {args.port}" if args.port else f"GRADIO_SERVER_PORT={os.environ.get('GRADIO_SERVER_PORT')}"
    )
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT") or 0)
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    if port and _port_taken(host, port):
        sys.exit(f"app.py: cannot start the studio: {port_flag} is in use on {host}; choose another --port")

    from app import studio
    from app.services import compare, model, state
    from audio_thinker.errors import first_line

    given = {"db_url": args.db, "model_path": args.model}
    state.configure(**{k: v for k, v in given.items() if v})
    try:  # the ratings store first: a bad --db is named as such, not as a model that did not load
        state.store()
    except state.StoreUnavailable as err:
        reason = first_line(err.__cause__ or err, 300)
        sys.exit(f"app.py: cannot open the ratings database {state.db_label()}: {reason}")
    except ValueError as err:  # a URL no installed driver reads; the message names it
        sys.exit(f"app.py: cannot open the ratings database: {first_line(err, 300)}")
    if spaces is not None:
        compare.use_gpu_decorator(spaces.GPU)
    try:  # a model that cannot be loaded: one line saying why, not a stack trace
        model.check_model()
        model.warm_up()
    except state.UserError as err:
        sys.exit(f"app.py: cannot start the studio: {err}")
    except (OSError, ValueError) as err:
        sys.exit(
            f"app.py: cannot start the studio: {model.model_name()} did not load ({first_line(err, 300)})"
        )
    overrides: dict[str, object] = {}
    if args.port:
        overrides["server_port"] = args.port
    if args.host:
        overrides["server_name"] = args.host
    studio.launch(**overrides)


if __name__ == "__main__":
    main()
