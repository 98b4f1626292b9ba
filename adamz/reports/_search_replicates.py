"""Search replicates: every compared search run again with other sampler seeds, and the verdict
over them.

One search is one draw of the procedure it stands for: one sampler seed picked its trials, and
its winner, confirmed on fresh seeds, is one outcome of that draw. ``report --search-replicates
R`` measures the search's own variance by repeating it:

- **the studies**: replicate ``r`` of study ``S`` is the study ``S~r<r>`` (:func:`replicate_name`)
  in the same storage, made from ``S``'s stored definition with only its name, its description
  and its sampler's seed changed (:func:`search_replicate_spec`: ``S``'s seed plus ``r - 1``,
  recorded in the definition, which seeds its sampler as a study file's seed does), and run to
  ``S``'s budget by the ordinary workers, which sample as they sample any study (see
  :mod:`adamz.search.worker`). ``S`` itself is replicate 1. Every replicate trains its trials
  on the study file's seeds (``0 .. seeds_per_trial - 1``): what varies between replicates is
  the sampler;
- **their confirmations**: the replicates numbered ``r`` of every compared search are confirmed
  together, as ``--confirm K`` confirms the originals, on ``K`` seeds of their own
  (:func:`confirmation_first_seed`: replicate ``r``'s from ``FIRST_SEED + (r - 1) K``), so the
  ``R`` comparisons are independent draws of the whole procedure, a search and then its
  confirmation;
- **the verdict over them** (:func:`over_replicates`): for each pair the page compares, the
  ``R`` per-replicate differences (each the Hodges-Lehmann shift over that replicate's seeds),
  how many favour each side, how many the seed-level verdict calls, and their own
  Hodges-Lehmann estimate with the signed-rank interval (:func:`replicate_interval`);
- **pooled over them**: each pair's paired seed differences of every replicate taken
  together (``R x K`` pairs, each replicate's winners on that replicate's seeds), summarised
  as the verdict summarises one confirmation: the Hodges-Lehmann shift with the 95 % interval
  of the signed-rank test, its p-value and the equivalence test (TOST) at the page's margin,
  both adjusted (Benjamini-Hochberg) over every pooled comparison of the section, all
  workloads together. Five replicates alone cannot give a 95 % interval or a p below 0.06;
  their seeds pooled can. The pooled figures take the searches as they fell: how much the
  search's draw moves a difference is the spread over replicates beside them. Each
  optimizer's pooled result is the median over replicates of its winner's test median, with
  the smallest and largest beside it (:func:`pooled_winners`), and the attribution table
  (:func:`attribution`) reads the pooled differences that split AdamZ's: what the controller
  adds (AdamZ − adamz-no-controller), what clipping adds (adam-clip − Adam), and what AdamZ
  adds over Adam.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamz.reports._confirm import FIRST_SEED
from adamz.reports._data import ReportError, Section, StudyData
from adamz.reports._replicates import (
    CONFIDENCE,
    EQUIVALENCE_MARGIN,
    Margin,
    margin_of,
    margin_words,
    page_unit,
    verdict_words,
)
from adamz.reports._stats import (
    benjamini_hochberg,
    hodges_lehmann,
    hodges_lehmann_interval,
    paired_statistics,
)
from adamz.search.studies import StudySpec, spec_from_definition

__all__ = [
    "SEPARATOR",
    "SIGNIFICANCE",
    "ReplicateDifference",
    "ReplicateWinner",
    "attribution",
    "confirmation_first_seed",
    "over_replicates",
    "pooled_winners",
    "replicate_interval",
    "replicate_name",
    "replicate_of",
    "replicate_sampler_seed",
    "search_replicate_spec",
    "search_replicates_section",
]

SIGNIFICANCE = 0.05
"""The level of the pooled tests, as the verdict's."""
SEPARATOR = "~r"
"""Between a search's name and its replicate's number: ``digits-adamz~r2``."""
_NAMED = re.compile(rf"^(?P<study>.+){re.escape(SEPARATOR)}(?P<replicate>[0-9]+)$")


def replicate_name(study: str, replicate: int) -> str:
    """The name of replicate ``replicate`` of the search ``study`` (replicate 1 is ``study``).

    Raises:
        ValueError: ``replicate`` is below 1.
    """
    if replicate < 1:
        raise ValueError(f"Invalid replicate: must be >= 1, got {replicate}.")
    return study if replicate == 1 else f"{study}{SEPARATOR}{replicate}"


def replicate_of(name: str) -> tuple[str, int]:
    """The search a study name replicates, and its replicate's number: ``("S", r)`` for
    ``S~r<r>`` (r >= 2), ``(name, 1)`` for any other name."""
    match = _NAMED.match(name)
    if match is None or int(match["replicate"]) < 2:
        return name, 1
    return match["study"], int(match["replicate"])


def replicate_sampler_seed(definition: dict[str, Any], replicate: int) -> int:
    """The sampler seed of replicate ``replicate`` of the search ``definition`` defines: its own
    seed (0 where it sets none) plus ``replicate - 1``, so replicate 1 keeps the file's."""
    seed = definition.get("sampler", {}).get("seed")
    return (seed if isinstance(seed, int) else 0) + replicate - 1


def search_replicate_spec(data: StudyData, replicate: int) -> StudySpec:
    """Replicate ``replicate`` (>= 2) of the search ``data``: its stored definition, renamed
    (:func:`replicate_name`), described, and with its sampler seeded by
    :func:`replicate_sampler_seed`; nothing else changes, the budget included (the replicate
    takes ``data``'s budget where ``adamz-search budget`` changed it: see the CLI).

    Raises:
        ReportError: ``data`` was not made by ``adamz-search create``, is not a search (a
            sensitivity or replicate study), or is itself a search replicate; ``replicate`` is
            below 2.
    """
    if replicate < 2:
        raise ReportError(f"Invalid replicate: must be >= 2 (1 is the study), got {replicate}.")
    definition = data.definition
    if definition is None:
        raise ReportError(
            f"Study {data.name!r} was not created by adamz-search: it has no stored definition "
            "to replicate."
        )
    kind = definition.get("kind")
    if kind is not None:
        raise ReportError(
            f"Study {data.name!r} is a {kind} study: search replicates repeat a search."
        )
    original, number = replicate_of(data.name)
    if number != 1:
        raise ReportError(
            f"Study {data.name!r} is replicate {number} of {original!r}: replicate the "
            "original search."
        )
    changed = copy.deepcopy(definition)
    changed["name"] = replicate_name(data.name, replicate)
    changed["sampler"] = {
        **changed["sampler"],
        "seed": replicate_sampler_seed(definition, replicate),
    }
    changed["description"] = (
        f"search replicate {replicate} of {data.name}: its definition with sampler seed "
        f"{changed['sampler']['seed']}"
    )
    spec = spec_from_definition(changed, source=f"replicate {replicate} of study {data.name}")
    if not isinstance(spec, StudySpec):  # a search's definition gives a search
        raise ReportError(f"Study {data.name!r} is not a search: it cannot be replicated.")
    return spec


def confirmation_first_seed(replicate: int, seeds: int) -> int:
    """The first confirmation seed of replicate ``replicate`` when each is confirmed on
    ``seeds`` seeds: replicate 1 on :data:`~adamz.reports._confirm.FIRST_SEED` on (the seeds
    of a plain ``--confirm``), each next one on the following ``seeds``."""
    return FIRST_SEED + (replicate - 1) * seeds


def replicate_interval(differences: np.ndarray) -> tuple[float, float, float]:
    """The signed-rank interval of the Hodges-Lehmann shift of ``differences`` (one per
    replicate), and its confidence: 95 % from 6 replicates; with fewer, where 95 % is out of
    reach, the smallest to the largest difference, an interval for the median of any
    continuous distribution whose confidence is ``1 - 2 ** (1 - R)`` (50 % at 2, 75 % at 3,
    88 % at 4, 94 % at 5). NaN with fewer than 2 differences."""
    count = len(differences)
    if count < 2:
        return math.nan, math.nan, math.nan
    confidence = min(CONFIDENCE, 1 - 2.0 ** (1 - count))
    low, high = hodges_lehmann_interval(np.asarray(differences, dtype=float), confidence)
    return low, high, confidence


@dataclass(frozen=True)
class ReplicateDifference:
    """One paired comparison of one replicate's confirmation.

    Attributes:
        searches: the compared searches, by their original names, sorted; with
            ``confirmation_seeds``, which comparison this is a replicate of.
        confirmation_seeds: the seeds each candidate of the confirmation trained.
        replicate: the replicate's number.
        first, second: the searches (original names) whose winners are compared.
        difference: ``first`` minus ``second``, the Hodges-Lehmann shift over the seeds, in the
            metric's units.
        first_better, second_better: whether the seed-level verdict (adjusted) calls one better.
        metric, maximize: the confirmation's metric and direction.
        seed_differences: ``first`` minus ``second`` on each seed both finished.
        first_optimizer, second_optimizer: the registry names of their optimizers.
    """

    searches: tuple[str, ...]
    confirmation_seeds: int
    replicate: int
    first: str
    second: str
    difference: float
    first_better: bool
    second_better: bool
    metric: str
    maximize: bool
    seed_differences: tuple[float, ...] = ()
    first_optimizer: str = ""
    second_optimizer: str = ""


@dataclass(frozen=True)
class ReplicateWinner:
    """One search's winner in one replicate's confirmation.

    Attributes:
        searches: the compared searches, by their original names, sorted (as
            :class:`ReplicateDifference`'s).
        replicate: the replicate's number.
        search: the search (original name) the winner comes from.
        optimizer: its registry name.
        median: the winner's median over the confirmation's seeds, in the metric's units.
        metric, maximize: the confirmation's metric and direction.
    """

    searches: tuple[str, ...]
    replicate: int
    search: str
    optimizer: str
    median: float
    metric: str
    maximize: bool


def over_replicates(
    differences: list[ReplicateDifference], *, margin: Margin = EQUIVALENCE_MARGIN
) -> list[dict[str, Any]]:
    """Each pair's differences over the replicates, for the pairs compared in 2 replicates or
    more, in the order first met: the replicates, their differences, how many put ``first``
    ahead, behind or level, how many the seed-level verdict calls either way, whether the sign
    flips, the Hodges-Lehmann estimate over replicates with :func:`replicate_interval`, and
    ``pooled``: the statistics of every replicate's seed differences together (see the module
    docs), with ``margin`` (in the page's unit; or one per metric) for the equivalence test,
    the p-values adjusted over every pair returned, and the call in words.

    A replicate found twice for one pair (two confirmations of it) counts once, the first.

    Raises:
        ValueError: ``margin`` is not positive.
    """
    for value in margin.values() if isinstance(margin, Mapping) else [margin]:
        if not value > 0:
            raise ValueError(f"Invalid margin: must be > 0, got {value}.")
    pairs: dict[tuple[Any, ...], dict[int, ReplicateDifference]] = {}
    for item in differences:
        key = (item.searches, item.confirmation_seeds, item.first, item.second)
        pairs.setdefault(key, {}).setdefault(item.replicate, item)
    result = []
    for by_replicate in pairs.values():
        if len(by_replicate) < 2:
            continue
        items = [by_replicate[r] for r in sorted(by_replicate)]
        first = items[0]
        sign = 1.0 if first.maximize else -1.0
        values = np.array([item.difference for item in items], dtype=float)
        ahead = int(np.count_nonzero(sign * values > 0))
        behind = int(np.count_nonzero(sign * values < 0))
        low, high, confidence = replicate_interval(values)
        result.append(
            {
                "first": first.first,
                "second": first.second,
                "searches": list(first.searches),
                "confirmation_seeds": first.confirmation_seeds,
                "metric": first.metric,
                "maximize": first.maximize,
                "replicates": [item.replicate for item in items],
                "differences": values.tolist(),
                "ahead": ahead,
                "behind": behind,
                "level": len(items) - ahead - behind,
                "better_by_seeds": sum(item.first_better for item in items),
                "worse_by_seeds": sum(item.second_better for item in items),
                "sign_flips": bool(ahead and behind),
                "difference": hodges_lehmann(values),
                "interval": [low, high],
                "confidence": confidence,
                "optimizers": [first.first_optimizer, first.second_optimizer],
                "pooled": _pooled(items, margin_of(margin, first.metric)),
            }
        )
    _adjust([pair["pooled"] for pair in result if pair["pooled"]["n"]])
    for pair in result:
        if pair["pooled"]["n"]:
            pair["pooled"]["verdict"] = verdict_words(
                pair["pooled"],
                first=pair["first"],
                second=pair["second"],
                margin=margin_of(margin, pair["metric"]),
                unit=page_unit(pair["metric"])[1],
            )
    return result


def _pooled(items: list[ReplicateDifference], margin: float) -> dict[str, Any]:
    """The signed-rank statistics of the seed differences of ``items`` taken together;
    ``margin`` in the page's unit."""
    pooled = np.array([d for item in items for d in item.seed_differences], dtype=float)
    if not len(pooled):
        return {"n": 0}
    first = items[0]
    scale = page_unit(first.metric)[0]
    statistics = paired_statistics(pooled, margin=margin / scale, confidence=CONFIDENCE)
    sign = 1.0 if first.maximize else -1.0
    return {
        "n": statistics.n,
        "difference": statistics.estimate,
        "ci95_difference": list(statistics.interval),
        "p_value": statistics.p_value,
        "equivalence_p_value": statistics.equivalence_p_value,
        "margin": margin / scale,
        "reference_better": bool(sign * statistics.estimate > 0),
    }


def _adjust(family: list[dict[str, Any]]) -> None:
    """Adjust the pooled p-values together (Benjamini-Hochberg), and call each comparison as
    the verdict does: better where the adjusted p is below :data:`SIGNIFICANCE` and the
    interval excludes 0, equivalent where the adjusted TOST p is."""
    adjusted = benjamini_hochberg([item["p_value"] for item in family])
    equivalence = benjamini_hochberg([item["equivalence_p_value"] for item in family])
    for item, p_value, equivalence_p in zip(family, adjusted, equivalence, strict=True):
        low, high = item["ci95_difference"]
        item["adjusted_p_value"] = p_value
        item["adjusted_equivalence_p_value"] = equivalence_p
        item["differs"] = bool(
            p_value < SIGNIFICANCE and math.isfinite(low) and not low <= 0 <= high
        )
        item["equivalent"] = bool(equivalence_p < SIGNIFICANCE)


def pooled_winners(winners: list[ReplicateWinner]) -> list[dict[str, Any]]:
    """Each search's winners over the replicates of one comparison, for the searches confirmed
    in 2 replicates or more, in the order first met: the replicates, each winner's median, their
    median (the pooled result), smallest and largest."""
    found: dict[tuple[tuple[str, ...], str], dict[int, ReplicateWinner]] = {}
    for winner in winners:
        found.setdefault((winner.searches, winner.search), {}).setdefault(winner.replicate, winner)
    result = []
    for by_replicate in found.values():
        if len(by_replicate) < 2:
            continue
        items = [by_replicate[r] for r in sorted(by_replicate)]
        medians = np.array([item.median for item in items], dtype=float)
        result.append(
            {
                "search": items[0].search,
                "optimizer": items[0].optimizer,
                "searches": list(items[0].searches),
                "metric": items[0].metric,
                "maximize": items[0].maximize,
                "replicates": [item.replicate for item in items],
                "medians": medians.tolist(),
                "median": float(np.median(medians)),
                "smallest": float(medians.min()),
                "largest": float(medians.max()),
            }
        )
    return result


ATTRIBUTION = (
    ("what the controller adds", "adamz", "adamz-no-controller"),
    ("what clipping adds", "adam-clip", "adam"),
    ("what AdamZ adds over Adam", "adamz", "adam"),
)
"""The attribution table's rows: a name, and the optimizers subtracted (first − second)."""


def attribution(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of :data:`ATTRIBUTION` found among ``pairs`` (of :func:`over_replicates`), per
    comparison (its searches), each with its pair."""
    rows = []
    groups = dict.fromkeys(tuple(pair["searches"]) for pair in pairs)
    for searches in groups:
        for part, first, second in ATTRIBUTION:
            found = [
                pair
                for pair in pairs
                if tuple(pair["searches"]) == searches and pair["optimizers"] == [first, second]
            ]
            if len(found) == 1:
                rows.append({"part": part, "searches": list(searches), "pair": found[0]})
    return rows


def search_replicates_section(
    differences: list[ReplicateDifference],
    winners: list[ReplicateWinner] | None = None,
    *,
    margin: Margin = EQUIVALENCE_MARGIN,
) -> Section:
    """The verdict over search replicates: a sentence and a table row per pair compared in 2
    replicates or more (:func:`over_replicates`, pooled tests at ``margin`` in the page's unit,
    or at each metric's own),
    the pooled result of each search's winners (:func:`pooled_winners`) and the attribution
    (:func:`attribution`); empty where no pair was compared in 2 replicates.

    Raises:
        ValueError: ``margin`` is not positive.
    """
    section = Section("Verdict over search replicates")
    pairs = over_replicates(differences, margin=margin)
    if not pairs:
        return section
    counts = sorted({len(pair["replicates"]) for pair in pairs})
    tested = sum(1 for pair in pairs if pair["pooled"]["n"])
    section.notes.append(
        "How to read it: each search was run "
        + " or ".join(map(str, counts))
        + " times with independent sampler seeds (replicate 1 is the study named, replicate r "
        f"the study NAME{SEPARATOR}r), and each replicate's candidates were confirmed on fresh "
        "seeds of its own, so each replicate is one draw of the whole procedure. A row counts "
        "the replicates in which the first winner is ahead of the second (the Hodges-Lehmann "
        "shift over that replicate's seeds), and those in which the seed-level verdict below "
        "calls a winner better; its shift over replicates is the Hodges-Lehmann estimate of "
        "the per-replicate shifts, with the signed-rank interval: 95 % from 6 replicates, and "
        "below that the smallest to the largest shift, whose confidence is 1 − 2^(1 − R) "
        "(50 % at 2 replicates, 75 % at 3, 88 % at 4, 94 % at 5). Pooled: every replicate's "
        "paired seeds together, the Hodges-Lehmann shift with the 95 % interval of the "
        "signed-rank test, its p-value and the equivalence test (TOST) at "
        f"{margin_words(margin)}, both adjusted (Benjamini-Hochberg) "
        f"over the {tested} pooled comparisons of this section, every workload together; "
        f"better: adjusted p < {SIGNIFICANCE} and an interval without 0; equivalent: adjusted "
        f"TOST p < {SIGNIFICANCE}. The pooled test takes the searches as they fell: the spread "
        "over replicates says how much a search's draw moves the difference."
    )
    table = [
        [
            "first − second", "replicates", "first ahead / behind / level",
            "better by the seeds: first / second", "shift in each replicate",
            "shift over replicates [interval]", "confidence", "sign",
            "pooled seeds: Hodges-Lehmann [95 % CI]", "pooled: adjusted p / TOST p",
            "pooled verdict",
        ]
    ]  # fmt: skip
    for pair in pairs:
        scale, unit = page_unit(pair["metric"])
        digits = 2 if scale == 100.0 else 4
        count = len(pair["replicates"])
        low, high = pair["interval"]
        interval = (
            f"[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]"
            if math.isfinite(low)
            else "n/a"
        )
        pooled = pair["pooled"]
        names = f"**{pair['first']}** − {pair['second']}"
        sentence = (
            f"{names} over {count} search replicates: {pair['first']} ahead in "
            f"{pair['ahead']}, behind in {pair['behind']}"
            + (f", level in {pair['level']}" if pair["level"] else "")
            + f" (better by the seeds in {pair['better_by_seeds']}, worse in "
            f"{pair['worse_by_seeds']}); {pair['difference'] * scale:+.{digits}f} {unit} of "
            f"{pair['metric']} over replicates (Hodges-Lehmann, {pair['confidence']:.0%} "
            f"interval {interval})"
        )
        if pooled["n"]:
            sentence += (
                f"; pooled over {pooled['n']} paired seeds "
                f"{_shift(pooled, scale, digits)}, adjusted p = "
                f"{pooled['adjusted_p_value']:.2g}, TOST p = "
                f"{pooled['adjusted_equivalence_p_value']:.2g}: {pooled['verdict']}"
            )
        sentence += "."
        if pair["sign_flips"]:
            sentence += (
                " The sign flips between replicates: which is ahead depends on the search's "
                "draw, so a single search would not have settled it."
            )
        section.summary.append(sentence)
        table.append(
            [
                f"{pair['first']} − {pair['second']}, {unit}",
                str(count),
                f"{pair['ahead']} / {pair['behind']} / {pair['level']}",
                f"{pair['better_by_seeds']} / {pair['worse_by_seeds']}",
                ", ".join(
                    f"r{replicate} {value * scale:+.{digits}f}"
                    for replicate, value in zip(
                        pair["replicates"], pair["differences"], strict=True
                    )
                ),
                f"{pair['difference'] * scale:+.{digits}f} {interval}",
                f"{pair['confidence']:.0%}",
                "flips" if pair["sign_flips"] else "steady",
                _shift(pooled, scale, digits) if pooled["n"] else "",
                f"{pooled['adjusted_p_value']:.2g} / {pooled['adjusted_equivalence_p_value']:.2g}"
                if pooled["n"]
                else "",
                pooled.get("verdict", ""),
            ]
        )
    section.numbers["pairs"] = pairs
    section.tables.append(table)
    pooled_results = pooled_winners(winners or [])
    if pooled_results:
        section.tables.append(_winners_table(pooled_results))
        section.numbers["winners"] = pooled_results
    rows = attribution(pairs)
    if rows:
        section.tables.append(_attribution_table(rows))
        section.numbers["attribution"] = [
            {"part": row["part"], "searches": row["searches"], "first": row["pair"]["first"],
             "second": row["pair"]["second"], **row["pair"]["pooled"]}
            for row in rows
        ]  # fmt: skip
    return section


def _shift(pooled: dict[str, Any], scale: float, digits: int) -> str:
    low, high = pooled["ci95_difference"]
    interval = (
        f"[{low * scale:+.{digits}f}, {high * scale:+.{digits}f}]" if math.isfinite(low) else ""
    )
    return f"{pooled['difference'] * scale:+.{digits}f} {interval}".rstrip()


def _winners_table(results: list[dict[str, Any]]) -> list[list[str]]:
    """Each search's pooled result: the median over replicates of its winner's median."""
    table = [
        [
            "search", "optimizer", "replicates", "median over replicates of the winner's median",
            "smallest – largest", "each replicate",
        ]
    ]  # fmt: skip
    for result in results:
        scale, unit = page_unit(result["metric"])
        digits = 2 if scale == 100.0 else 4
        table.append(
            [
                result["search"],
                result["optimizer"],
                str(len(result["replicates"])),
                f"{result['median'] * scale:.{digits}f} {unit} of {result['metric']}",
                f"{result['smallest'] * scale:.{digits}f} – {result['largest'] * scale:.{digits}f}",
                ", ".join(
                    f"r{replicate} {value * scale:.{digits}f}"
                    for replicate, value in zip(
                        result["replicates"], result["medians"], strict=True
                    )
                ),
            ]
        )
    return table


def _attribution_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """What the controller, the clipping and AdamZ as a whole add, pooled, per comparison."""
    table = [
        [
            "part", "first − second", "pooled seeds: Hodges-Lehmann [95 % CI]",
            "adjusted p / TOST p", "replicates ahead / behind", "pooled verdict",
        ]
    ]  # fmt: skip
    for row in rows:
        pair, pooled = row["pair"], row["pair"]["pooled"]
        scale, unit = page_unit(pair["metric"])
        digits = 2 if scale == 100.0 else 4
        table.append(
            [
                row["part"],
                f"{pair['first']} − {pair['second']}, {unit}",
                _shift(pooled, scale, digits) if pooled["n"] else "",
                f"{pooled['adjusted_p_value']:.2g} / {pooled['adjusted_equivalence_p_value']:.2g}"
                if pooled["n"]
                else "",
                f"{pair['ahead']} / {pair['behind']}",
                pooled.get("verdict", ""),
            ]
        )
    return table
