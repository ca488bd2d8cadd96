"""``python -m audio_thinker.store backup --db URL --out F`` / ``restore --db URL --from F [--merge]``
(see :mod:`audio_thinker.store.backup`). Errors are one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from ..errors import first_line
from .backup import backup, restore
from .engine import display_url
from .store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audio_thinker.store", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup", help="write the whole store (rows and clips) to one zip file")
    b.add_argument(
        "--db", default=None, help="SQLAlchemy URL (default: $AUDIO_THINKER_DB, else annotations/)"
    )
    b.add_argument("--media", default=None, help="the clips' folder (default: beside a SQLite file)")
    b.add_argument("--out", required=True, help="the backup file to write (.zip)")
    r = sub.add_parser("restore", help="rebuild a store from a backup")
    r.add_argument("--db", default=None, help="SQLAlchemy URL of the store to restore into")
    r.add_argument("--media", default=None, help="the clips' folder (default: beside a SQLite file)")
    r.add_argument("--from", dest="src", required=True, help="the backup file")
    r.add_argument("--merge", action="store_true", help="add to a store that has rows (no duplicates)")
    args = parser.parse_args(argv)
    try:
        with Store(args.db, args.media) as store:
            if args.command == "backup":
                n = backup(store, args.out)
                what = "written to " + args.out
            else:
                n = restore(store, args.src, merge=args.merge)
                what = ("merged into " if args.merge else "restored into ") + display_url(store.url)
    except (ValueError, SQLAlchemyError, OSError) as err:  # ValueError: a BackupError, a URL no driver reads
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 1
    print(", ".join(f"{v} {k}" for k, v in n.items()) + f" {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
