"""TinyTOFU: a deterministic, offline, TOFU-shaped benchmark of fictitious authors.

The generator draws fictitious authors from a :class:`faker.Faker` instance seeded with
``Faker.seed_instance`` (name, birth date and place, genre, parents' occupations, an award, two book
titles) and writes about ten templated question-answer pairs per author. Each pair carries

* ``answer``: the gold answer (trained on);
* ``paraphrased_answer``: the same fact in other words (never trained on; used by the truth ratio);
* ``perturbed_answers``: at least three wrong answers, written like the paraphrase but with the value of
  the same field taken from other authors;
* ``idk_answer``: an "I don't know" style answer (for IdkDPO and relabelling).

Splits follow TOFU: ``forget01/05/10`` are the last 1 / 5 / 10 % of the trained authors (nested, as in
TOFU), ``retain`` is the complement of the forget split among the trained authors, and ``holdout``
authors are never trained on (as many as the forget split has, for membership inference; the pool
holds twice the forget10 size so that a benchmark can keep a disjoint validation block). The retain
*evaluation* set uses the first authors, which no forget split ever contains, so it is the same for every
split (like TOFU's ``retain_perturbed``). Two utility sets stand in for TOFU's real-authors and
world-facts: short facts the model learns in training and must keep, in open-unlearning's
"probability with options" form (a correct answer plus wrong options).

Example:
    >>> data = generate_tinytofu(TinyTofuConfig(n_authors=20, seed=3))
    >>> s = data.split("forget05")
    >>> len({q.author for q in s.forget}), len({q.author for q in s.holdout})
    (1, 1)
    >>> len(s.forget[0].perturbed_answers) >= 3
    True
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge, Le

from ..._config import Validated
from ...errors import ConfigError, DataError
from .qa import SPLITS, QAItem, TofuSplit, split_fraction

__all__ = [
    "SPLITS",
    "Author",
    "QAItem",
    "TinyTofu",
    "TinyTofuConfig",
    "TofuSplit",
    "generate_tinytofu",
    "split_fraction",
]

logger = logging.getLogger(__name__)

_GENRES = (
    "science fiction", "mystery", "romance", "fantasy", "horror",
    "historical fiction", "poetry", "thriller", "biography", "children's literature",
    "satire", "crime", "drama", "travel writing",
)
_IDK = (
    "I'm not sure.",
    "I don't know the answer to that.",
    "I have no information about that.",
    "That is beyond my knowledge.",
    "I cannot answer that question.",
)


@dataclass(frozen=True)
class Author:
    """A fictitious author's attributes."""

    index: int
    name: str
    birth_date: str
    birth_place: str
    genre: str
    father_job: str
    mother_job: str
    award: str
    books: tuple[str, str]

    def value(self, field: str) -> str:
        """Return the attribute called ``field`` ("book1"/"book2" select a book)."""
        if field == "book1":
            return self.books[0]
        if field == "book2":
            return self.books[1]
        return str(getattr(self, field))


@dataclass(frozen=True)
class TinyTofuConfig(Validated):
    """Size and seed of a TinyTOFU instance.

    Attributes:
        n_authors: trained authors (the ``full`` set); forget splits take 1/5/10 % of them (at least 1).
        seed: seed of the Faker instance and of every draw.
        n_perturbed: wrong answers per question (>= 3).
        n_retain_eval_authors: authors whose QA pairs form the retain evaluation set (never forgotten).
        n_real_authors: items of the real-authors stand-in utility set.
        n_world_facts: items of the world-facts stand-in utility set.
        n_options: wrong options per utility item.
    """

    n_authors: Annotated[int, Ge(10), Le(10_000)] = 100
    seed: Annotated[int, Ge(0), Le(2**32 - 1)] = 0
    n_perturbed: Annotated[int, Ge(3), Le(100)] = 3
    n_retain_eval_authors: Annotated[int, Ge(1), Le(10_000)] = 10
    n_real_authors: Annotated[int, Ge(4), Le(100_000)] = 40
    n_world_facts: Annotated[int, Ge(4), Le(100_000)] = 40
    n_options: Annotated[int, Ge(1), Le(100)] = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        n_forget_max = split_fraction("forget10", self.n_authors)
        if self.n_retain_eval_authors > self.n_authors - n_forget_max:
            raise ConfigError(
                f"TinyTofuConfig.n_retain_eval_authors: expected <= {self.n_authors - n_forget_max} "
                f"(authors outside forget10), received {self.n_retain_eval_authors}"
            )
        if self.n_perturbed >= self.n_authors:
            raise ConfigError(
                f"TinyTofuConfig.n_perturbed: expected < n_authors={self.n_authors}, received {self.n_perturbed}"
            )


@dataclass(frozen=True)
class TinyTofu:
    """A generated TinyTOFU instance: authors, QA pairs, utility sets and splits."""

    config: TinyTofuConfig
    authors: tuple[Author, ...]
    holdout_authors: tuple[Author, ...]
    qa: tuple[QAItem, ...]
    holdout_qa: tuple[QAItem, ...]
    real_authors: tuple[QAItem, ...]
    world_facts: tuple[QAItem, ...]

    @property
    def full(self) -> tuple[QAItem, ...]:
        """QA pairs of every trained author (the target model's fact set)."""
        return self.qa

    def forget_authors(self, split: str) -> tuple[int, ...]:
        """Indices of the forget authors of ``split``: the last ones, nested as in TOFU."""
        k = split_fraction(split, self.config.n_authors)
        n = self.config.n_authors
        return tuple(range(n - k, n))

    def split(self, split: str) -> TofuSplit:
        """Return the data of ``split`` ("forget01", "forget05" or "forget10")."""
        forget_ids = set(self.forget_authors(split))
        k = len(forget_ids)
        holdout_ids = {a.index for a in self.holdout_authors[:k]}
        eval_ids = set(range(self.config.n_retain_eval_authors))
        return TofuSplit(
            name=split,
            forget=tuple(q for q in self.qa if q.author in forget_ids),
            retain=tuple(q for q in self.qa if q.author not in forget_ids),
            retain_eval=tuple(q for q in self.qa if q.author in eval_ids),
            holdout=tuple(q for q in self.holdout_qa if q.author in holdout_ids),
            real_authors=self.real_authors,
            world_facts=self.world_facts,
        )

    def write_tofu_files(self, directory: str | os.PathLike[str], split: str) -> list[Path]:
        """Write ``split`` in the public TOFU file layout (JSON) so the real-data loader can read it.

        Files: ``{split}_perturbed.json``, ``retain_perturbed.json``, ``holdoutNN.json``,
        ``real_authors_perturbed.json``, ``world_facts_perturbed.json`` and ``retainMM.json``
        (MM = 100 - NN), each an array of records in the public schema.
        """
        from ..._io import atomic_write_json, safe_child

        s = self.split(split)
        nn = int(split[6:])
        files = {
            f"{split}_perturbed.json": s.forget,
            "retain_perturbed.json": s.retain_eval,
            f"holdout{nn:02d}.json": s.holdout,
            "real_authors_perturbed.json": s.real_authors,
            "world_facts_perturbed.json": s.world_facts,
            f"retain{100 - nn:02d}.json": s.retain,
        }
        return [
            atomic_write_json(safe_child(directory, name), [q.to_json() for q in items])
            for name, items in files.items()
        ]

    def fingerprint(self) -> str:
        """SHA-256 of the generated content (for cache keys and provenance)."""
        blob = json.dumps(
            [q.to_json() for q in self.qa + self.holdout_qa + self.real_authors + self.world_facts],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """Return the whole instance as JSON-ready data (config, authors, sets)."""
        return {
            "config": dataclasses.asdict(self.config),
            "authors": [dataclasses.asdict(a) for a in self.authors],
            "holdout_authors": [dataclasses.asdict(a) for a in self.holdout_authors],
            "full": [q.to_json() for q in self.qa],
            "holdout": [q.to_json() for q in self.holdout_qa],
            "real_authors": [q.to_json() for q in self.real_authors],
            "world_facts": [q.to_json() for q in self.world_facts],
        }


# (field, question, answer template, paraphrase template); {n} = name, {v} = value
_TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    (
        "name",
        "What is the full name of the {genre} author born in {birth_place} on {birth_date}?",
        "The author's full name is {v}.",
        "This writer is called {v}.",
    ),
    ("birth_date", "When was {n} born?", "{n} was born on {v}.", "The birthday of {n} is {v}."),
    ("birth_place", "Where was {n} born?", "{n} was born in {v}.", "The birthplace of {n} is {v}."),
    ("genre", "What genre does {n} write in?", "{n} writes {v}.", "The genre of {n} is {v}."),
    (
        "father_job",
        "What did the father of {n} do for a living?",
        "The father of {n} was a {v}.",
        "{n} grew up with a father who worked as a {v}.",
    ),
    (
        "mother_job",
        "What was the profession of the mother of {n}?",
        "The mother of {n} was a {v}.",
        "{n} was raised by a mother who worked as a {v}.",
    ),
    ("award", "Which award has {n} received?", "{n} received {v}.", "{n} was honoured with {v}."),
    (
        "book1",
        "What is the first book written by {n}?",
        "The first book by {n} is {v}.",
        "{n} debuted with the book {v}.",
    ),
    (
        "book2",
        "Can you name another book written by {n}?",
        "Another book by {n} is {v}.",
        "{n} also wrote {v}.",
    ),
    (
        "genre_books",
        "What kind of books is {n} known for?",
        "{n} is known for {v} books.",
        "Readers know {n} for writing {v}.",
    ),
)


def _unique(draw: Any, seen: set[str], what: str) -> str:
    for _ in range(1000):
        v = str(draw())
        if v not in seen:
            seen.add(v)
            return v
    raise DataError(f"TinyTOFU generator: could not draw a unique {what} after 1000 tries")


def _title(fake: Any, rng: random.Random) -> str:
    w1 = str(fake.word()).title()
    w2 = str(fake.word()).title()
    form = rng.randrange(4)
    if form == 0:
        return f'"The {w1} of {w2}"'
    if form == 1:
        return f'"{w1} and {w2}"'
    if form == 2:
        return f'"A {w1} in {fake.city()}"'
    return f'"{w1} {w2}"'


def _job(fake: Any) -> str:
    return str(fake.job()).split(",")[0].split("/")[0].strip().lower()


def _make_author(index: int, fake: Any, rng: random.Random, names: set[str], titles: set[str]) -> Author:
    name = _unique(fake.name, names, "author name")
    day = fake.date_between_dates(datetime.date(1930, 1, 1), datetime.date(1999, 12, 31))
    return Author(
        index=index,
        name=name,
        birth_date=f"{day:%B} {day.day}, {day.year}",
        birth_place=f"{fake.city()}, {fake.country()}",
        genre=_GENRES[rng.randrange(len(_GENRES))],
        father_job=_job(fake),
        mother_job=_job(fake),
        award=f"the {fake.last_name()} Award for {str(fake.word()).title()} Writing",
        books=(
            _unique(lambda: _title(fake, rng), titles, "book title"),
            _unique(lambda: _title(fake, rng), titles, "book title"),
        ),
    )


def _author_qa(a: Author, pool: Sequence[Author], n_perturbed: int, rng: random.Random) -> list[QAItem]:
    out: list[QAItem] = []
    for field, q_t, a_t, p_t in _TEMPLATES:
        key = "genre" if field == "genre_books" else field
        value = a.value(key)
        fmt = {"n": a.name, "genre": a.genre, "birth_place": a.birth_place, "birth_date": a.birth_date}
        others = sorted({b.value(key) for b in pool if b.index != a.index and b.value(key) != value})
        if len(others) < n_perturbed:
            raise DataError(
                f"TinyTOFU generator: field {field!r} has {len(others)} distinct wrong values, "
                f"expected >= n_perturbed={n_perturbed}"
            )
        wrong = rng.sample(others, n_perturbed)
        out.append(
            QAItem(
                question=q_t.format(**fmt),
                answer=a_t.format(v=value, **fmt),
                paraphrased_answer=p_t.format(v=value, **fmt),
                perturbed_answers=tuple(p_t.format(v=w, **fmt) for w in wrong),
                idk_answer=_IDK[rng.randrange(len(_IDK))],
                author=a.index,
                field=field,
            )
        )
    return out


def _options(
    questions: Sequence[str], answers: Sequence[str], n_options: int, rng: random.Random, field: str
) -> tuple[QAItem, ...]:
    out = []
    for i, (q, ans) in enumerate(zip(questions, answers, strict=True)):
        others = [a for j, a in enumerate(answers) if j != i and a != ans]
        wrong = tuple(rng.sample(others, n_options))
        out.append(QAItem(q, ans, ans, wrong, _IDK[rng.randrange(len(_IDK))], -1, field))
    return tuple(out)


def generate_tinytofu(config: TinyTofuConfig | None = None) -> TinyTofu:
    """Generate a TinyTOFU instance; the same config always gives identical data.

    Args:
        config: sizes and seed (defaults: 100 trained authors, seed 0).

    Returns:
        The generated :class:`TinyTofu`.

    Raises:
        ConfigError: ``config`` is not a :class:`TinyTofuConfig`.
    """
    from faker import Faker

    cfg = config if config is not None else TinyTofuConfig()
    if not isinstance(cfg, TinyTofuConfig):
        raise ConfigError(f"config: expected a TinyTofuConfig, received {type(cfg).__name__}")
    fake = Faker("en_US")
    fake.seed_instance(cfg.seed)
    rng = random.Random(cfg.seed)
    names: set[str] = set()
    titles: set[str] = set()
    n_hold = 2 * split_fraction("forget10", cfg.n_authors)  # reported holdout, then a validation block
    authors = tuple(_make_author(i, fake, rng, names, titles) for i in range(cfg.n_authors))
    holdout = tuple(_make_author(cfg.n_authors + i, fake, rng, names, titles) for i in range(n_hold))
    everyone = authors + holdout
    qa = tuple(item for a in authors for item in _author_qa(a, everyone, cfg.n_perturbed, rng))
    holdout_qa = tuple(item for a in holdout for item in _author_qa(a, everyone, cfg.n_perturbed, rng))

    famous = [_unique(fake.name, names, "real-author name") for _ in range(cfg.n_real_authors)]
    famous_titles = [_unique(lambda: _title(fake, rng), titles, "book title") for _ in famous]
    real_authors = _options(
        [f"Who wrote the classic novel {t}?" for t in famous_titles],
        famous,
        cfg.n_options,
        rng,
        "real_author",
    )
    countries: set[str] = set()
    cities: set[str] = set()
    c_names = [_unique(fake.country, countries, "country") for _ in range(cfg.n_world_facts)]
    capitals = [_unique(fake.city, cities, "city") for _ in c_names]
    world_facts = _options(
        [f"What is the capital of {c}?" for c in c_names], capitals, cfg.n_options, rng, "world_fact"
    )
    logger.debug("generated TinyTOFU: %d authors, %d QA pairs, seed %d", len(authors), len(qa), cfg.seed)
    return TinyTofu(cfg, authors, holdout, qa, holdout_qa, real_authors, world_facts)
