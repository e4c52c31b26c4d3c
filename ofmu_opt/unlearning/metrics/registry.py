"""A metric registry: an evaluation is a list of metric names; each metric declares what it needs.

A family of metrics (TOFU, vision, MCQ) is one :class:`MetricRegistry` holding two kinds of entries:

* **inputs**: named, expensive, shared values computed from the family's evaluation context: a model
  pass that yields per-sample token log-likelihoods, greedy generations, predictions, a reference
  model's logs. An input is computed at most once per evaluation, however many metrics read it.
* **metrics**: named functions of an :class:`Evaluation` returning one entry
  ``{"agg_value": ..., "value_by_index": {...}}`` (open-unlearning's schema). Each declares the inputs it
  ``needs``, the other metrics whose results it ``uses`` (computed first, once, shared) and the data
  parts it ``requires`` (a metric whose parts are absent from the context is unavailable).

A metric may read only what it declared: :meth:`Evaluation.input` and :meth:`Evaluation.result` raise
:class:`~ofmu_opt.errors.OfmuError` for an undeclared name, so the declarations stay true.

:meth:`MetricRegistry.evaluate` runs a list of names: unknown names raise
:class:`~ofmu_opt.errors.ConfigError` (listing the known ones); unavailable metrics are skipped
(``strict=False``, the default, with a debug log line) or raise :class:`~ofmu_opt.errors.DataError`
(``strict=True``). The result keeps the order of the requested names.

Examples:
    >>> reg = MetricRegistry("demo")
    >>> reg.add_input("values", lambda ev: [1.0, 2.0, 6.0])
    >>> reg.add_metric(Metric("mean", lambda ev: entry(sum(ev.input("values")) / 3), needs=("values",)))
    >>> reg.add_metric(Metric("twice", lambda ev: entry(2 * ev.result("mean")["agg_value"]), uses=("mean",)))
    >>> out = reg.evaluate(["twice"], context=None)
    >>> out["twice"]["agg_value"]
    6.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, DataError, OfmuError

__all__ = ["Entry", "Evaluation", "Metric", "MetricRegistry", "entry", "scores_entry"]

log = logging.getLogger(__name__)

Entry = dict[str, Any]
"""One metric's result: ``{"agg_value": float | None, "value_by_index": {index: value}}``."""


def entry(agg: float | None, by_index: Mapping[str, Any] | None = None) -> Entry:
    """An :data:`Entry` from the aggregate and the optional per-sample values."""
    return {"agg_value": agg, "value_by_index": dict(by_index or {})}


def scores_entry(agg: float, scores: Sequence[float]) -> Entry:
    """An :data:`Entry` whose per-sample values are ``{"<i>": {"score": v}}``."""
    return entry(agg, {str(i): {"score": v} for i, v in enumerate(scores)})


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    Attributes:
        name: the key of its entry in the evaluation's output.
        compute: ``compute(evaluation) -> Entry``.
        needs: the inputs it reads (computed once per evaluation, shared with other metrics).
        uses: the metrics whose results it reads (computed first, once).
        requires: the data parts that must be present in the context (``context.has(part)``).
        doc: one line for listings.
    """

    name: str
    compute: Callable[[Evaluation], Entry]
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    doc: str = ""


class MetricRegistry:
    """The inputs and metrics of one family (see the module docstring).

    Args:
        family: the family's name (``"tofu"``, ``"vision"``, ``"mcq"``), used in messages.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._inputs: dict[str, Callable[[Evaluation], Any]] = {}
        self._metrics: dict[str, Metric] = {}

    def add_input(self, name: str, provider: Callable[[Evaluation], Any]) -> None:
        """Register input ``name``; ``provider(evaluation)`` computes it (it may read other inputs)."""
        if name in self._inputs:
            raise OfmuError(f"{self.family} metrics: input {name!r} is registered twice")
        self._inputs[name] = provider

    def add_metric(self, metric: Metric) -> None:
        """Register ``metric``; its ``needs`` and ``uses`` must already be registered."""
        if metric.name in self._metrics:
            raise OfmuError(f"{self.family} metrics: metric {metric.name!r} is registered twice")
        for n in metric.needs:
            if n not in self._inputs:
                raise OfmuError(f"{self.family} metric {metric.name!r}: needs unregistered input {n!r}")
        for u in metric.uses:
            if u not in self._metrics:
                raise OfmuError(f"{self.family} metric {metric.name!r}: uses unregistered metric {u!r}")
        self._metrics[metric.name] = metric

    def metric(
        self,
        name: str,
        *,
        needs: Iterable[str] = (),
        uses: Iterable[str] = (),
        requires: Iterable[str] = (),
        doc: str = "",
    ) -> Callable[[Callable[[Evaluation], Entry]], Callable[[Evaluation], Entry]]:
        """Decorator form of :meth:`add_metric`."""

        def wrap(fn: Callable[[Evaluation], Entry]) -> Callable[[Evaluation], Entry]:
            self.add_metric(
                Metric(name, fn, tuple(needs), tuple(uses), tuple(requires), doc or (fn.__doc__ or "").strip())
            )
            return fn

        return wrap

    def names(self) -> list[str]:
        """The registered metric names, in registration order."""
        return list(self._metrics)

    def describe(self) -> list[dict[str, str]]:
        """One row per metric: ``name``, ``needs``, ``uses``, ``requires`` (comma-separated) and ``doc``."""
        return [
            {
                "name": m.name,
                "needs": ", ".join(m.needs),
                "uses": ", ".join(m.uses),
                "requires": ", ".join(m.requires),
                "doc": m.doc,
            }
            for m in self._metrics.values()
        ]

    def inputs(self) -> list[str]:
        """The registered input names."""
        return list(self._inputs)

    def get(self, name: str) -> Metric:
        """The metric ``name`` (ConfigError listing the known names when unknown)."""
        if name not in self._metrics:
            raise ConfigError(
                f"{self.family} metric: expected one of {', '.join(self._metrics)}, received {name!r}"
            )
        return self._metrics[name]

    def provider(self, name: str) -> Callable[[Evaluation], Any]:
        """The provider of input ``name``."""
        if name not in self._inputs:
            raise OfmuError(f"{self.family} metrics: no input {name!r}")
        return self._inputs[name]

    def evaluate(self, names: Iterable[str], context: Any, *, strict: bool = False) -> dict[str, Entry]:
        """Compute the metrics ``names`` on ``context`` (see the module docstring)."""
        return Evaluation(self, context).run(names, strict=strict)


class Evaluation:
    """One evaluation of a registry's metrics on a context: the caches of inputs and results.

    Args:
        registry: the family.
        context: the family's context object; ``context.has(part)`` (when defined) says which data parts
            are present.
    """

    def __init__(self, registry: MetricRegistry, context: Any) -> None:
        self.registry = registry
        self.context = context
        self._inputs: dict[str, Any] = {}
        self._results: dict[str, Entry] = {}
        self._stack: list[Metric] = []
        self.computed_inputs: list[str] = []
        """Inputs in the order they were computed (each once)."""

    def available(self, name: str) -> bool:
        """Whether metric ``name``'s required parts (and those of the metrics it uses) are present."""
        m = self.registry.get(name)
        has = getattr(self.context, "has", None)
        if has is not None and not all(has(p) for p in m.requires):
            return False
        return all(self.available(u) for u in m.uses)

    def input(self, name: str) -> Any:
        """Input ``name`` (computed on first use); a metric may read only the inputs it declared."""
        self._check_declared("input", name)
        if name not in self._inputs:
            provider = self.registry.provider(name)
            saved, self._stack = self._stack, []  # a provider may read other inputs
            try:
                self._inputs[name] = provider(self)
            finally:
                self._stack = saved
            self.computed_inputs.append(name)
        return self._inputs[name]

    def _check_declared(self, kind: str, name: str) -> None:
        """OfmuError when the metric being computed reads an input or metric it did not declare."""
        if not self._stack:
            return
        m = self._stack[-1]
        if name not in (m.needs if kind == "input" else m.uses):
            raise OfmuError(f"{self.registry.family} metric {m.name!r} reads {kind} {name!r} it does not declare")

    def result(self, name: str) -> Entry:
        """Metric ``name``'s entry (computed on first use); a metric may read only the metrics it uses."""
        self._check_declared("metric", name)
        if name not in self._results:
            m = self.registry.get(name)
            if not self.available(name):
                raise DataError(f"{self.registry.family} metric {name!r}: the context lacks {', '.join(m.requires)}")
            self._stack.append(m)
            try:
                self._results[name] = m.compute(self)
            finally:
                self._stack.pop()
        return self._results[name]

    def run(self, names: Iterable[str], *, strict: bool = False) -> dict[str, Entry]:
        """The entries of ``names`` (in that order); unavailable ones skipped, or DataError when ``strict``."""
        wanted = list(dict.fromkeys(names))
        for n in wanted:
            self.registry.get(n)  # unknown names fail before any computation
        out: dict[str, Entry] = {}
        for n in wanted:
            if not self.available(n):
                if strict:
                    raise DataError(
                        f"{self.registry.family} metric {n!r}: the context lacks a part it requires "
                        f"({', '.join(self.registry.get(n).requires) or 'via the metrics it uses'})"
                    )
                log.debug("%s metric %s skipped: its data is absent", self.registry.family, n)
                continue
            out[n] = self.result(n)
        return out
