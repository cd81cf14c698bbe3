"""Asset checks, each declared once, and write–audit–publish.

A ``Check`` is a name, a description, whether it blocks, and the function that evaluates it on
what a step has staged (the rows it is about to commit). Assets build their ``check_specs`` from
their checks and evaluate them on the staged window *before* committing: a failed blocking check
commits nothing, fails the step (so nothing downstream runs) and shows red with the rows it
found; warning checks are reported beside the materialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, Failure, MetadataValue

from crypto_assets.memory import release_free_memory
from crypto_assets.partitions import window_label
from crypto_assets.resources.lakehouse import replanned

Staged = TypeVar("Staged")


@dataclass(frozen=True)
class Check(Generic[Staged]):
    name: str
    description: str
    # staged window -> (passed, metadata naming what was wrong)
    evaluate: Callable[[Staged], tuple[bool, dict]]
    blocking: bool = False

    def spec(self, asset_key: AssetKey) -> AssetCheckSpec:
        return AssetCheckSpec(self.name, asset=asset_key, description=self.description, blocking=self.blocking)

    def result(self, asset_key: AssetKey, staged: Staged) -> AssetCheckResult:
        passed, metadata = self.evaluate(staged)
        return AssetCheckResult(
            asset_key=asset_key, check_name=self.name, passed=passed, metadata=metadata,
            severity=AssetCheckSeverity.ERROR if self.blocking else AssetCheckSeverity.WARN,
        )  # fmt: skip


def specs(asset_key: AssetKey, checks: Iterable[Check]) -> list[AssetCheckSpec]:
    return [check.spec(asset_key) for check in checks]


def audit(asset_key: AssetKey, checks: Iterable[Check[Staged]], staged: Staged) -> list[AssetCheckResult]:
    return [check.result(asset_key, staged) for check in checks]


def failed_blocking(results: Iterable[AssetCheckResult]) -> list[str]:
    return [str(r.check_name) for r in results if r.severity == AssetCheckSeverity.ERROR and not r.passed]


def _merge(values: list):
    """One metadata value from the same entry of every slice: dicts and lists joined, counts
    summed, anything else (thresholds, tolerances) as the first slice had it."""
    values = [getattr(v, "value", v) for v in values]
    if all(isinstance(v, dict) for v in values):
        return MetadataValue.json({k: v for value in values for k, v in value.items()})
    if all(isinstance(v, list) for v in values):
        return MetadataValue.json([item for value in values for item in value])
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return sum(values)
    return values[0]


def merge_slices(per_slice: list[list[AssetCheckResult]]) -> list[AssetCheckResult]:
    """One result per check for a window evaluated slice by slice: failed if any slice failed.
    A check missing from some slices (a table a slice does not write) merges the slices it has."""
    if len(per_slice) == 1:
        return per_slice[0]
    by_check: dict[tuple, list[AssetCheckResult]] = {}
    for result in (result for results in per_slice for result in results):
        by_check.setdefault((result.asset_key, result.check_name), []).append(result)
    merged = []
    for results in by_check.values():
        first = results[0]
        keys = list(dict.fromkeys(key for result in results for key in result.metadata))
        metadata = {key: _merge([r.metadata[key] for r in results if key in r.metadata]) for key in keys}
        merged.append(
            AssetCheckResult(
                asset_key=first.asset_key,
                check_name=first.check_name,
                severity=first.severity,
                passed=all(r.passed for r in results),
                metadata=metadata,
            )
        )
    return merged


def refuse_publication(results: list[AssetCheckResult], failed: list[str], what: str) -> Iterator[AssetCheckResult]:
    """Report every check, then fail the step: the staged window (slice) was not committed."""
    yield from results
    raise Failure(
        description=f"{what}: blocking check(s) {', '.join(failed)} failed on the staged window; "
        "nothing was committed for these hours, every table keeps its previous version of them",
        metadata={"failed_checks": MetadataValue.json(failed)},
    )


def publish_in_slices(
    what: str,
    slices: list[tuple[datetime, datetime]],
    plan_and_commit: Callable[[datetime, datetime], tuple[Any, list[AssetCheckResult], Any]],
    on_committed: Callable[[str, Any, Any], None],
) -> Generator[AssetCheckResult, None, list[AssetCheckResult]]:
    """Write, audit, publish a window a slice at a time (``slices``, in order): ``plan_and_commit(a, b)`` stages a
    slice, audits it and commits it only if no blocking check failed, returning (staged, results,
    what it committed or None); lost races are re-planned. ``on_committed(label, staged, written)``
    sees each committed slice (and should keep only a summary: slices bound memory). A refused
    slice yields every check result so far and fails the step (earlier slices stay: they passed).
    Returns one result per check."""
    per_slice = []
    for slice_start, slice_end in slices:
        label = f"{what} {window_label(slice_start, slice_end)}"
        staged, results, written = replanned(label, lambda: plan_and_commit(slice_start, slice_end))
        per_slice.append(results)
        if written is None:
            yield from refuse_publication(merge_slices(per_slice), failed_blocking(results), label)
        on_committed(label, staged, written)
        del staged, written  # the slice's rows, before their memory is handed back
        release_free_memory()
    return merge_slices(per_slice)
