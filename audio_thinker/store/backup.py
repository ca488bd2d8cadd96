"""Backup and restore: the whole store as one zip file, and a store rebuilt from one.

A backup (``backup(store, out)``) is a zip holding ``store.jsonl`` (a header line, then one line per row:
``{"table": ..., "row": {...}}`` for annotators, clips, items, generations, ratings, votes,
comparisons and settings, every column, times as ISO 8601 UTC) and ``media/<hash>.<ext>``, each clip's bytes.

``restore(store, src)`` rebuilds a store from it. Into an empty store (no annotators, clips, items,
generations, ratings, votes or comparisons; settings do not count, since an admin's queue settings are
written before anyone rates) rows keep their ids, so exports and logs that name a generation still match,
and the backup's settings replace the store's. Over a store that holds rows it refuses
(:class:`BackupError`) unless ``merge=True``: then rows are matched by what they are, not by id (annotators by name, clips by hash,
items by source and external id, else by source, question, choices, clip and owner; generations by
item, model, mode, text, run and step; a rating by generation and annotator; a vote or a comparison by
annotator and the two generations in either order), missing ones are added with new ids, and a rating or
vote present on both sides keeps the one changed last, and a setting the store has keeps its value.
Restoring the same backup twice adds nothing. The file is checked before anything is written (every row
has its table's required columns, every reference names a row the backup holds), and everything is
written in one transaction: a bad file writes nothing, and the error is one line naming the problem.

CLI: ``python -m audio_thinker.store backup --db URL --out F`` and ``restore --db URL --from F [--merge]``.
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .schema import (
    _EXT_BY_FORMAT,
    _HASH_RE,
    Annotator,
    Base,
    Clip,
    Comparison,
    Generation,
    Item,
    Rating,
    Setting,
    Vote,
)

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
    """The open zip and its rows, checked by :func:`_check` (a :class:`BackupError` otherwise)."""
    try:
        zf = zipfile.ZipFile(src)
        raw = zf.read("store.jsonl").decode("utf-8").splitlines()
    except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as err:
        raise BackupError(f"{Path(src).name} is not a store backup ({type(err).__name__})") from None
    try:
        head = json.loads(raw[0]) if raw else {}
        if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") != VERSION:
            raise BackupError(f"{Path(src).name} is not a version-{VERSION} store backup")
        rows = []
        for number, line in enumerate(raw[1:], start=2):
            if line.strip():
                rec = json.loads(line)
                if (
                    not isinstance(rec, dict)
                    or rec.get("table") not in _MODELS
                    or not isinstance(rec.get("row"), dict)
                ):
                    raise BackupError(
                        f"line {number} of the backup is not a row of a known table: {line[:60]}"
                    )
                rows.append((rec["table"], rec["row"]))
        _check(rows)
    except json.JSONDecodeError as err:
        zf.close()
        raise BackupError(f"{Path(src).name} has a malformed line ({err.msg})") from None
    except BackupError:
        zf.close()
        raise
    return zf, rows


REFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    **{
        (name, fk.parent.key): (fk.column.table.name, fk.column.key)
        for name, model in TABLES
        for fk in model.__table__.foreign_keys
    },
    ("items", "owner_id"): ("annotators", "id"),  # an annotators.id without a foreign key (migration 0004)
}
"""Each column of a backup row that names another row: (table, column) -> (its table, key column)."""


@functools.cache
def _required(model: type[Base]) -> tuple[str, ...]:
    """The columns a backup row of ``model`` must hold: its keys, and those without a default or NULL
    (computed once per table, not once per row)."""
    return tuple(
        c.key
        for c in model.__table__.columns
        if c.primary_key or (not c.nullable and c.default is None and c.server_default is None)
    )


def _check(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Refuse a backup whose rows cannot be restored as they are: a row without a required column, two rows
    with the same key, a row naming a row the backup does not hold (one line, naming the first problem)."""
    keys: dict[str, set[Any]] = {name: set() for name, _ in TABLES}
    for name, row in rows:
        model = _MODELS[name]
        _values(model, row)  # unknown columns, bad times
        missing = [c for c in _required(model) if row.get(c) is None]
        if missing:
            raise BackupError(f"a row of {name} in the backup has no {missing[0]}: {json.dumps(row)[:60]}")
        (pk,) = (c.key for c in model.__table__.primary_key.columns)
        key = row[pk]
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise BackupError(f"a row of {name} in the backup has a bad {pk}: {key!r}")
        if key in keys[name]:
            raise BackupError(f"the backup has two {name} rows with {pk} {key!r}")
        if model is Clip and (
            not _HASH_RE.fullmatch(str(key)) or row["ext"] not in {*_EXT_BY_FORMAT.values(), "audio"}
        ):  # the media file's path is made of them (core.add_clip: "audio" when the format has no extension)
            raise BackupError(f"a row of clips in the backup has a bad hash or ext: {key!r}, {row['ext']!r}")
        keys[name].add(key)
    for name, row in rows:
        for (table, column), (parent, _) in REFERENCES.items():
            value = row.get(column) if table == name else None
            if value is not None and (not isinstance(value, (int, str)) or value not in keys[parent]):
                raise BackupError(
                    f"a row of {name} in the backup names {column} {value!r}, which is not in the backup's {parent}"
                )


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
        present = {k: v for k, v in counts(store).items() if v and k != "settings"}
        if present and not merge:
            held = ", ".join(f"{v} {k}" for k, v in present.items())
            raise BackupError(
                f"the store is not empty ({held}); restore into an empty store, or merge with --merge"
            )
        added = {name: 0 for name, _ in TABLES}
        try:
            _write(store, zf, rows, merge, added)
        except (KeyError, TypeError, AttributeError) as err:  # what _check did not foresee: still one line
            raise BackupError(f"{Path(src).name} cannot be restored: {type(err).__name__} {err}") from None
    return added


def _write(
    store: Any,
    zf: zipfile.ZipFile,
    rows: list[tuple[str, dict[str, Any]]],
    merge: bool,
    added: dict[str, int],
) -> None:
    """Write the checked ``rows`` and the clips' bytes into ``store`` in one transaction."""
    media = {Path(n).name: n for n in zf.namelist() if n.startswith("media/")}
    with store.session(write=True) as session:
        if merge:
            _merge(session, rows, added)
        else:
            for name, model, values in _by_table(rows):
                if model is Setting:  # the only table an "empty" store may hold rows of: upserted
                    for v in values:
                        session.merge(Setting(**v))
                else:
                    session.add_all(model(**v) for v in values)
                session.flush()  # parents first: not every foreign key has a relationship to order by
                added[name] = len(values)
            session.flush()
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                for name, model in TABLES:
                    if "id" in model.__table__.columns:
                        session.execute(text(sequence_sql(name)))
        for clip in session.scalars(select(Clip)):  # the bytes of every clip the store now has
            target = store.media_dir / clip.hash[:2] / clip.filename
            if not target.is_file() and clip.filename in media:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".partial")
                tmp.write_bytes(zf.read(media[clip.filename]))
                os.replace(tmp, target)


def sequence_sql(table: str) -> str:
    """PostgreSQL: move ``table``'s id sequence past its largest id, so that the next id is MAX(id) + 1, or
    1 when the table is empty (``setval``'s third argument false: the value given is the next one)."""
    top = f"(SELECT MAX(id) FROM {table})"
    return f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE({top}, 1), {top} IS NOT NULL)"


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
