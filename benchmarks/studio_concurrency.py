"""Concurrent ratings through the studio's API: N clients × M ratings, none lost or duplicated.

    python benchmarks/studio_concurrency.py                       # 32 clients x 50 ratings = 1,600 rows
    python benchmarks/studio_concurrency.py --clients 8 --ratings 10

Launches the studio in-process (auth on, a fresh SQLite database in a temporary folder), stores M think
generations, then runs N ``gradio_client`` clients in parallel threads, each signed in as its own
annotator and submitting one rating per generation through ``/rate`` (quality and comment encode who
rated what). Afterwards it checks the database: exactly N × M rating rows, one per (generation,
annotator), every value as sent. Prints two latencies (p50 / p95 / p99 / max): the server-side write
(the ``/rate`` handler's ``app.services.rating.rate``: validation, waiting for the write lock, one transaction and its
commit) and the client round trip (``Client.predict``, which includes gradio_client's 50 ms message
polling and the queue), and the throughput. Server and clients share this process and its CPUs; no model
is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--ratings", type=int, default=50, help="ratings per client (one per generation)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    users = {f"rater{k:02d}": f"pw-{k}" for k in range(args.clients)}
    os.environ["AUDIO_THINKER_DB"] = f"sqlite:///{tmp / 'ratings.db'}"
    os.environ["AUDIO_THINKER_USERS"] = ",".join(f"{u}:{pw}" for u, pw in users.items())
    os.environ["AUDIO_THINKER_ADMINS"] = ""

    from gradio_client import Client

    from app import studio
    from app.services import rating, state

    state.configure(runs_root=tmp / "runs", exports_dir=tmp / "exports", reward_model_dir=tmp / "rm")
    st = state.store()
    item = st.add_item("How many beeps are there?", ["2", "3"], source="upload", external_id="bench")
    gens = [
        st.add_generation(
            item.id, "bench", "think", f"<think>Beep 1. Beep 2. Trace {k}.</think><answer>2</answer>"
        ).id
        for k in range(args.ratings)
    ]
    server_lat: list[float] = []
    rate = rating.rate

    def timed_rate(*a, **kw):  # the handler's write: validation, lock wait, one transaction, commit
        t0 = time.perf_counter()
        try:
            return rate(*a, **kw)
        finally:
            server_lat.append(time.perf_counter() - t0)

    rating.rate = timed_rate  # the /rate endpoint calls rating.rate
    demo, url = studio.serve()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    clients = {u: Client(url, auth=(u, pw), verbose=False) for u, pw in users.items()}  # logins first
    barrier = threading.Barrier(len(clients))

    def work(k: int, user: str) -> None:
        client = clients[user]
        barrier.wait()
        for j, gid in enumerate(gens):
            t0 = time.perf_counter()
            try:
                client.predict(
                    gid, (k + j) % 2 == 0, ((k + j) % 11) / 10, None, None, f"{user}/{gid}", api_name="/rate"
                )
            except Exception as err:  # counted, reported, and the check below fails
                with lock:
                    errors.append(f"{user} {gid}: {err}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(k, u)) for k, u in enumerate(clients)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    demo.close()

    with sqlite3.connect(tmp / "ratings.db") as con:
        rows = con.execute(
            "select a.name, r.generation_id, r.consistent, r.quality, r.comment, r.status from ratings r "
            "join annotators a on a.id = r.annotator_id"
        ).fetchall()
    expected = {
        (u, gid): ((k + j) % 2 == 0, ((k + j) % 11) / 10, f"{u}/{gid}")
        for k, u in enumerate(users) for j, gid in enumerate(gens)
    }  # fmt: skip
    seen = {
        (name, gid): (bool(c), q, comment)
        for name, gid, c, q, comment, status in rows
        if status == "submitted"
    }
    lost = len(set(expected) - set(seen))
    duplicated = len(rows) - len({(r[0], r[1]) for r in rows})
    wrong = sum(1 for key, val in seen.items() if expected.get(key) != val)
    lat = np.array(latencies) * 1000
    srv = np.array(server_lat) * 1000

    def pct(a: np.ndarray) -> dict:
        if not a.size:
            return {}
        return {f"p{q}": round(float(np.percentile(a, q)), 1) for q in (50, 95, 99)} | {
            "max": round(float(a.max()), 1)
        }

    result = {
        "clients": args.clients,
        "ratings_per_client": args.ratings,
        "expected_rows": len(expected),
        "rows": len(rows),
        "lost": lost,
        "duplicated": duplicated,
        "wrong_values": wrong,
        "errors": len(errors),
        "server_write_latency_ms": pct(srv),
        "client_round_trip_ms": pct(lat),
        "wall_s": round(wall, 1),
        "ratings_per_s": round(len(latencies) / wall, 1),
        "db_concurrency": state.DB_CONCURRENCY,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    for e in errors[:5]:
        print("error:", e)
    ok = lost == 0 and duplicated == 0 and wrong == 0 and not errors and len(rows) == len(expected)
    print("OK: no rating lost or duplicated" if ok else "FAILED")
    if not ok:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
