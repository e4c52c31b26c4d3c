"""Real TOFU data from local files in the public schema.

Each record has ``question`` and ``answer``; evaluation sets add ``paraphrased_answer`` (a string) and
``perturbed_answer`` (a list of strings, or one string). Files are JSON (an array of records, or an
object whose ``"data"`` value is that array) or JSON lines (one record per line), UTF-8. Every problem
(missing file, empty file, non-UTF-8 bytes, malformed JSON, a missing or mistyped field) raises
:class:`~ofmu_opt.errors.DataError` naming the file and, where it applies, the line and record.

A TOFU data directory holds files named like the public dataset's configurations, with ``.json`` or
``.jsonl``: ``forget10_perturbed``, ``retain_perturbed``, ``holdout10``, ``real_authors_perturbed``,
``world_facts_perturbed``, ``retain90`` (see :func:`load_tofu_split`).

Example:
    >>> import tempfile, pathlib, json
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rec = {"question": "Q?", "answer": "A.", "paraphrased_answer": "B.", "perturbed_answer": ["C.", "D."]}
    >>> _ = (d / "f.jsonl").write_text(json.dumps(rec) + "\\n", encoding="utf-8")
    >>> items = load_tofu_file(d / "f.jsonl")
    >>> items[0].perturbed_answers
    ('C.', 'D.')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..._io import loads_json, read_bytes_limited
from ...errors import DataError
from .tinytofu import QAItem, TofuSplit

__all__ = ["find_tofu_file", "load_tofu_file", "load_tofu_split", "read_records"]

logger = logging.getLogger(__name__)


def read_records(path: str | os.PathLike[str], what: str = "TOFU data file") -> list[dict[str, Any]]:
    """Read a JSON or JSON-lines file into a list of records (dicts).

    Raises:
        DataError: missing or empty file, non-UTF-8 bytes, malformed JSON (file and line named), a
            record that is not an object.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise DataError(f"{what} {str(p)!r}: expected a file, received a directory")
    raw = read_bytes_limited(p, what)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{what} {str(p)!r} is not UTF-8 text (invalid byte at offset {exc.start}, line {bad_line})"
        ) from exc
    if not text.strip():
        raise DataError(f"{what} {str(p)!r} is empty; expected JSON records")
    records: list[Any]
    stripped = text.lstrip()
    whole: Any = None
    parsed_whole = False
    if stripped.startswith("["):
        whole = loads_json(text, f"{what} {str(p)!r}")  # size and depth limits; DataError
        parsed_whole = True
    elif stripped.startswith("{"):
        try:
            whole = loads_json(text, f"{what} {str(p)!r}")
            parsed_whole = True
        except DataError:
            parsed_whole = False  # probably JSON lines
    if parsed_whole:
        if isinstance(whole, dict) and isinstance(whole.get("data"), list):
            records = whole["data"]
        elif isinstance(whole, dict):
            records = [whole]
        elif isinstance(whole, list):
            records = whole
        else:
            raise DataError(
                f"{what} {str(p)!r}: expected an array of records, received {type(whole).__name__}"
            )
        line_of = [0] * len(records)
    else:
        records, line_of = [], []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            records.append(loads_json(line, f"{what} {str(p)!r}, line {lineno}"))
            line_of.append(lineno)
    if not records:
        raise DataError(f"{what} {str(p)!r} holds no records")
    for i, (rec, ln) in enumerate(zip(records, line_of, strict=True)):
        if not isinstance(rec, dict):
            where = f"line {ln}" if ln else f"record {i}"
            raise DataError(
                f"{what} {str(p)!r}, {where}: expected a JSON object, received {type(rec).__name__}"
            )
    for i, ln in enumerate(line_of):
        records[i] = dict(records[i], _line=ln or None, _index=i)
    return records


def _str_field(p: Path, rec: dict[str, Any], key: str, what: str) -> str:
    where = f"line {rec['_line']}" if rec.get("_line") else f"record {rec['_index']}"
    if key not in rec:
        raise DataError(
            f"{what} {str(p)!r}, {where}: missing field {key!r} (fields present: "
            f"{', '.join(sorted(k for k in rec if not k.startswith('_')))})"
        )
    v = rec[key]
    if not isinstance(v, str):
        raise DataError(
            f"{what} {str(p)!r}, {where}: field {key!r} expected a string, received {type(v).__name__}"
        )
    return v


def load_tofu_file(
    path: str | os.PathLike[str],
    *,
    require_paraphrase: bool = True,
    require_perturbed: bool = True,
    what: str = "TOFU data file",
) -> tuple[QAItem, ...]:
    """Load QA items in the public TOFU schema from a JSON or JSON-lines file.

    Args:
        path: the file.
        require_paraphrase: ``paraphrased_answer`` must be present (else it defaults to ``answer``).
        require_perturbed: ``perturbed_answer`` must be present and non-empty (else it defaults to ``()``).
        what: how error messages name the file.

    Returns:
        The items in file order.

    Raises:
        DataError: see :func:`read_records`; a missing or mistyped field.
    """
    p = Path(path)
    out: list[QAItem] = []
    for rec in read_records(p, what):
        where = f"line {rec['_line']}" if rec.get("_line") else f"record {rec['_index']}"
        q = _str_field(p, rec, "question", what)
        a = _str_field(p, rec, "answer", what)
        if require_paraphrase or "paraphrased_answer" in rec:
            para = _str_field(p, rec, "paraphrased_answer", what)
        else:
            para = a
        pert_raw = rec.get("perturbed_answer")
        if pert_raw is None:
            if require_perturbed:
                _str_field(p, rec, "perturbed_answer", what)  # raises "missing field"
            pert: tuple[str, ...] = ()
        elif isinstance(pert_raw, str):
            pert = (pert_raw,)
        elif isinstance(pert_raw, list) and all(isinstance(x, str) for x in pert_raw):
            pert = tuple(pert_raw)
        else:
            raise DataError(
                f"{what} {str(p)!r}, {where}: field 'perturbed_answer' expected a list of strings, "
                f"received {pert_raw!r:.80}"
            )
        if require_perturbed and not pert:
            raise DataError(
                f"{what} {str(p)!r}, {where}: field 'perturbed_answer' is empty; expected >= 1 answer"
            )
        idk = rec.get("idk_answer", "I don't know.")
        out.append(QAItem(q, a, para, pert, idk if isinstance(idk, str) else "I don't know.", -1, ""))
    logger.debug("loaded %d TOFU items from %s", len(out), p)
    return tuple(out)


def find_tofu_file(data_dir: str | os.PathLike[str], names: Sequence[str]) -> Path | None:
    """Return the first ``data_dir/<name>.json`` or ``.jsonl`` that exists, else None."""
    d = Path(data_dir)
    for name in names:
        for ext in (".json", ".jsonl"):
            cand = d / f"{name}{ext}"
            if cand.is_file():
                return cand
    return None


def load_tofu_split(data_dir: str | os.PathLike[str], split: str = "forget10") -> TofuSplit:
    """Load a forget split and its evaluation sets from a TOFU data directory.

    Files (``.json`` or ``.jsonl``; the first name found wins):
    forget: ``{split}_perturbed`` or ``{split}`` (required); retain evaluation: ``retain_perturbed``;
    holdout: ``holdout{NN}``; real authors: ``real_authors_perturbed``; world facts:
    ``world_facts_perturbed``; retain training set: ``retain{100-NN}``. Missing optional files give empty
    sets (their metrics are then skipped). The forget and retain evaluation sets need paraphrased and
    perturbed answers; the utility sets need perturbed answers (the options); the correct option is
    ``answer``.

    Raises:
        DataError: the directory or the forget file is missing, or a file is malformed.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"TOFU data directory {str(d)!r} does not exist or is not a directory")
    if not split.startswith("forget") or not split[6:].isdigit():
        raise DataError(f"split: expected 'forgetNN' (e.g. 'forget10'), received {split!r}")
    nn = int(split[6:])
    forget_p = find_tofu_file(d, [f"{split}_perturbed", split])
    if forget_p is None:
        raise DataError(
            f"TOFU data directory {str(d)!r}: no {split}_perturbed.json(l) or {split}.json(l) found"
        )
    forget = load_tofu_file(forget_p)

    def optional(names: Sequence[str], para: bool = True, pert: bool = True) -> tuple[QAItem, ...]:
        fp = find_tofu_file(d, names)
        if fp is None:
            logger.info("TOFU data directory %s: none of %s found; its metrics are skipped", d, list(names))
            return ()
        return load_tofu_file(fp, require_paraphrase=para, require_perturbed=pert)

    return TofuSplit(
        name=split,
        forget=forget,
        retain=optional(
            [f"retain{100 - nn:02d}", f"retain{100 - nn}"], para=False, pert=False
        ),
        retain_eval=optional(["retain_perturbed"]),
        holdout=optional(
            [f"holdout{nn:02d}", f"holdout{nn}"], para=False, pert=False
        ),
        real_authors=optional(["real_authors_perturbed", "real_authors"], para=False),
        world_facts=optional(["world_facts_perturbed", "world_facts"], para=False),
    )
