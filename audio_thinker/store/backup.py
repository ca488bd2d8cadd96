"""Backup and restore: the whole store as one zip file, and a store rebuilt from one.

A backup (``backup(store, out)``) is a zip holding ``store.jsonl`` (a header line, then one line per row:
``{"table": ..., "row": {...}}`` for annotators, clips, items, generations, ratings, votes,
comparisons and settings, every column, times as ISO 8601 UTC) and ``media/<hash>.<ext>``, each clip's bytes.

``restore(store, src)`` rebuilds a store from it. Into an empty store (no annotators, clips, items,
generations, ratings, votes or comparisons) rows keep their ids, so exports and logs that name a
generation still match. Over a store that holds rows it refuses (:class:`BackupError`) unless
``merge=True``: then rows are matched by what they are, not by id (annotators by name, clips by hash,
items by source and external id, else by source, question, choices, clip and owner; generations by
item, model, mode, text, run and step; a rating by generation and annotator; a vote or a comparison by
annotator and the two generations in either order), missing ones are added with new ids, and a rating or
vote present on both sides keeps the one changed last. Restoring the same backup twice adds nothing.
Everything is written in one transaction: a bad file writes nothing.

CLI: ``python -m audio_thinker.store backup --db URL --out F`` and ``restore --db URL --from F [--merge]``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .schema import Annotator, Base, Clip, Comparison, Generation, Item, Rating, Setting, Vote

FORMAT = "audio-thinker-store-backup"
VERSION = 1
TABLES: list[tuple[str, type[Base]]] = [
    ("annotators", Annotator),
    ("clips", Clip),
    ("items", Item),
    ("generations", Generation),
    ("ratings", Rating),
    ("votes", Vote),
    ("comparisons", Comparison),
    ("settings", Setting),
]
"""The tables a backup holds, parents before children."""
_MODELS = dict(TABLES)


class BackupError(ValueError):
    """A backup that cannot be read or restored here (one line, for people)."""


def _columns(model: type[Base]) -> list[str]:
    return [c.key for c in model.__table__.columns]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    return value


def _row(obj: Base) -> dict[str, Any]:
    return {key: _plain(getattr(obj, key)) for key in _columns(type(obj))}


def _values(model: type[Base], row: dict[str, Any]) -> dict[str, Any]:
    """A backup row as column values of ``model`` (times parsed; unknown keys refused)."""
    cols = model.__table__.columns
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key not in cols:
            raise BackupError(f"unknown column {model.__tablename__}.{key} in the backup")
        if value is not None and key.endswith("_at"):
            try:
                value = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise BackupError(f"bad time {value!r} in {model.__tablename__}.{key}") from None
        out[key] = value
    return out


def counts(store: Any) -> dict[str, int]:
    """Rows per table."""
    with store.session() as session:
        return {name: int(session.scalar(select(func.count()).select_from(m)) or 0) for name, m in TABLES}


def backup(store: Any, out: str | os.PathLike[str]) -> dict[str, int]:
    """Write the whole store (rows and clips' bytes) to the zip file ``out``; rows per table."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    written = {name: 0 for name, _ in TABLES}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf, store.session() as session:
        lines = [
            json.dumps({"format": FORMAT, "version": VERSION, "made_at": _plain(datetime.now(timezone.utc))})
        ]
        for name, model in TABLES:
            for obj in session.scalars(select(model).order_by(*model.__table__.primary_key.columns)):
                lines.append(json.dumps({"table": name, "row": _row(obj)}, ensure_ascii=False))
                written[name] += 1
                if model is Clip:
                    media = store.media_dir / obj.hash[:2] / obj.filename
                    if media.is_file():
                        zf.write(media, f"media/{obj.filename}")
        zf.writestr("store.jsonl", "\n".join(lines) + "\n")
    os.replace(tmp, path)
    return written


def _read(src: str | os.PathLike[str]) -> tuple[zipfile.ZipFile, list[tuple[str, dict[str, Any]]]]:
    try:
        zf = zipfile.ZipFile(src)
        raw = zf.read("store.jsonl").decode("utf-8").splitlines()
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise BackupError(f"{Path(src).name} is not a store backup ({type(err).__name__})") from None
    try:
        head = json.loads(raw[0]) if raw else {}
        if head.get("format") != FORMAT or head.get("version") != VERSION:
            raise BackupError(f"{Path(src).name} is not a version-{VERSION} store backup")
        rows = []
        for line in raw[1:]:
            if line.strip():
                rec = json.loads(line)
                if rec.get("table") not in _MODELS or not isinstance(rec.get("row"), dict):
                    raise BackupError(f"unknown record in the backup: {line[:80]}")
                rows.append((rec["table"], rec["row"]))
    except json.JSONDecodeError as err:
        zf.close()
        raise BackupError(f"{Path(src).name} has a malformed line ({err.msg})") from None
    return zf, rows


def _by_table(rows: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, type[Base], list[dict]]]:
    for name, model in TABLES:
        yield name, model, [_values(model, r) for t, r in rows if t == name]


def _newer(a: datetime | None, b: datetime | None) -> bool:
    """Whether ``a`` is later than ``b`` (naive times are UTC)."""
    if a is None:
        return False
    if b is None:
        return True
    norm = lambda d: d if d.tzinfo else d.replace(tzinfo=timezone.utc)  # noqa: E731
    return norm(a) > norm(b)


def restore(store: Any, src: str | os.PathLike[str], *, merge: bool = False) -> dict[str, int]:
    """Rebuild ``store`` from the backup ``src`` (see the module docstring); rows added per table."""
    zf, rows = _read(src)
    with zf:
        present = {k: v for k, v in counts(store).items() if v}
        if present and not merge:
            held = ", ".join(f"{v} {k}" for k, v in present.items())
            raise BackupError(
                f"the store is not empty ({held}); restore into an empty store, or merge with --merge"
            )
        media = {Path(n).name: n for n in zf.namelist() if n.startswith("media/")}
        added = {name: 0 for name, _ in TABLES}
        with store.session(write=True) as session:
            if merge:
                _merge(session, rows, added)
            else:
                for name, model, values in _by_table(rows):
                    session.add_all(model(**v) for v in values)
                    session.flush()  # parents first: not every foreign key has a relationship to order by
                    added[name] = len(values)
                session.flush()
                if session.bind is not None and session.bind.dialect.name == "postgresql":
                    for name, model in TABLES:
                        if "id" in model.__table__.columns:
                            session.execute(
                                text(
                                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                    f"COALESCE((SELECT MAX(id) FROM {name}), 1))"
                                )
                            )
            for clip in session.scalars(select(Clip)):  # the bytes of every clip the store now has
                target = store.media_dir / clip.hash[:2] / clip.filename
                if not target.is_file() and clip.filename in media:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(target.name + ".partial")
                    tmp.write_bytes(zf.read(media[clip.filename]))
                    os.replace(tmp, target)
    return added


def _merge(session: Session, rows: list[tuple[str, dict[str, Any]]], added: dict[str, int]) -> None:
    ids: dict[str, dict[int, int]] = {name: {} for name, _ in TABLES}
    tables = {name: values for name, _, values in _by_table(rows)}

    def insert(name: str, obj: Base, old_id: int | None) -> None:
        session.add(obj)
        session.flush()
        added[name] += 1
        if old_id is not None:
            ids[name][old_id] = obj.id

    for v in tables["annotators"]:
        found = session.scalar(select(Annotator).where(Annotator.name == v["name"]))
        if found is not None:
            ids["annotators"][v["id"]] = found.id
        else:
            insert("annotators", Annotator(**{**v, "id": None}), v["id"])
    for v in tables["clips"]:
        if session.get(Clip, v["hash"]) is None:
            insert("clips", Clip(**v), None)
    for v in tables["items"]:
        owner = ids["annotators"].get(v["owner_id"]) if v.get("owner_id") is not None else None
        query = select(Item).where(Item.source == v["source"])
        if v.get("external_id") is not None:
            query = query.where(Item.external_id == v["external_id"])
        else:
            query = query.where(
                Item.external_id.is_(None), Item.question == v["question"],
                Item.clip_hash.is_(None) if v.get("clip_hash") is None else Item.clip_hash == v["clip_hash"],
                Item.owner_id.is_(None) if owner is None else Item.owner_id == owner,
            )  # fmt: skip
        found = next((i for i in session.scalars(query) if list(i.choices) == list(v["choices"])), None)
        if found is not None:
            ids["items"][v["id"]] = found.id
        else:
            insert("items", Item(**{**v, "id": None, "owner_id": owner}), v["id"])
    for v in tables["generations"]:
        item_id = ids["items"][v["item_id"]]
        query = select(Generation).where(
            Generation.item_id == item_id, Generation.model == v["model"], Generation.mode == v["mode"],
            Generation.raw_text == v["raw_text"],
            Generation.run.is_(None) if v.get("run") is None else Generation.run == v["run"],
            Generation.step.is_(None) if v.get("step") is None else Generation.step == v["step"],
        )  # fmt: skip
        found = session.scalars(query).first()
        if found is not None:
            ids["generations"][v["id"]] = found.id
        else:
            insert("generations", Generation(**{**v, "id": None, "item_id": item_id}), v["id"])
    gen, ann = ids["generations"], ids["annotators"]
    for v in tables["ratings"]:
        new = {
            **v,
            "id": None,
            "generation_id": gen[v["generation_id"]],
            "annotator_id": ann[v["annotator_id"]],
        }
        found = session.scalar(
            select(Rating).where(
                Rating.generation_id == new["generation_id"], Rating.annotator_id == new["annotator_id"]
            )
        )
        if found is None:
            insert("ratings", Rating(**new), None)
        elif _newer(v.get("updated_at"), found.updated_at):
            for key, value in new.items():
                if key not in ("id", "created_at"):
                    setattr(found, key, value)
    for v in tables["settings"]:  # the store's own settings win; missing ones are added
        if session.get(Setting, v["key"]) is None:
            insert("settings", Setting(**v), None)
    for name, model in (("votes", Vote), ("comparisons", Comparison)):
        for v in tables[name]:
            a, b, who = gen[v["generation_a_id"]], gen[v["generation_b_id"]], ann[v["annotator_id"]]
            found = session.scalar(
                select(model).where(
                    model.annotator_id == who,
                    ((model.generation_a_id == a) & (model.generation_b_id == b))
                    | ((model.generation_a_id == b) & (model.generation_b_id == a)),
                )
            )
            new = {**v, "id": None, "generation_a_id": a, "generation_b_id": b, "annotator_id": who}
            if found is None:
                insert(name, model(**new), None)
            elif model is Vote and _newer(v.get("updated_at"), found.updated_at):
                flipped = found.generation_a_id != a  # stored the other way round: name the same generation
                found.choice = {"A": "B", "B": "A"}.get(v["choice"], v["choice"]) if flipped else v["choice"]
                found.swapped = (not v["swapped"]) if flipped else v["swapped"]
                found.updated_at = v["updated_at"]
