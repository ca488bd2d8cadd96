"""Time to the first streamed token of a studio answer, with the shipped tiny model on CPU (goal < 1 s).

    python benchmarks/studio_first_token.py            # 20 questions, after 2 warm-up runs
    python benchmarks/studio_first_token.py --n 50 --skip-http

Two measurements on synth-aqa example clips (think vs no-think, as the compare tab asks):

* ``service``: from calling ``app.services.compare.compare_stream`` (the generator behind the compare tab, which
  validates and decodes the upload, builds both prompts, encodes the audio and prefills) to the first
  yielded answer that holds a token;
* ``http``: end to end through the launched app: ``gradio_client`` submits to the UI's streaming event
  (``/compare_stream``), and the clock stops at the first streamed update whose chatbot holds an answer
  (including the upload of the 96 kB clip, the queue and the streaming protocol).

Prints p50 / p90 / max in seconds and the torch thread count used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stats(xs: list[float]) -> dict:
    a = np.array(xs)
    return {"n": int(a.size), "p50_s": round(float(np.median(a)), 3), "p90_s": round(float(np.percentile(a, 90)), 3),
            "max_s": round(float(a.max()), 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20, help="timed questions per measurement")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--skip-http", action="store_true", help="only the in-process measurement")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="studio-ft-"))
    os.environ["AUDIO_THINKER_DB"] = f"sqlite:///{tmp / 'ratings.db'}"
    os.environ.pop("AUDIO_THINKER_USERS", None)
    from app import studio
    from app.services import compare, model, state

    state.configure(runs_root=tmp / "runs", exports_dir=tmp / "exports", reward_model_dir=tmp / "rm")
    t0 = time.perf_counter()
    model.warm_up()
    load_s = time.perf_counter() - t0
    import torch

    examples = compare.example_items()
    result: dict = {"model": model.model_name(), "torch_threads": torch.get_num_threads(),
                    "model_load_s": round(load_s, 2)}  # fmt: skip

    def ask(k: int) -> float:
        path, item = examples[k % len(examples)]
        t = time.perf_counter()
        stream = compare.compare_stream(
            path, item["question"], item["choices"], "think vs no-think", save=False
        )
        for comp in stream:
            if comp.a.answer is not None and comp.a.tokens > 0:
                first = time.perf_counter() - t
                stream.close()
                return first
        raise RuntimeError("no token streamed")

    for k in range(args.warmup):
        ask(k)
    result["service"] = _stats([ask(k) for k in range(args.n)])

    if not args.skip_http:
        from gradio_client import Client, handle_file

        demo, url = studio.serve()
        client = Client(url, verbose=False)
        uploads = [handle_file(path) for path, _ in examples]

        def ask_http(k: int) -> float:
            _, item = examples[k % len(examples)]
            t = time.perf_counter()
            job = client.submit(uploads[k % len(uploads)], item["question"], "\n".join(item["choices"]),
                                "think vs no-think", api_name="/compare_stream")  # fmt: skip
            first = None
            for out in job:
                if first is None and any(isinstance(c, list) and len(c) > 1 for c in out):
                    first = time.perf_counter() - t
            if first is None:
                raise RuntimeError("no streamed answer")
            return first

        for k in range(args.warmup):
            ask_http(k)
        result["http"] = _stats([ask_http(k) for k in range(args.n)])
        demo.close()
    result["goal_p50_s"] = 1.0
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
