"""The one list of figures, importable without matplotlib.

The plan asks it which figures a config makes, the workflow generates one plot rule per entry
(workflow/rules/figures.smk: every parse of the workflow reads it, a SLURM job's too, so it
imports no plotting library), the report's caption of each is workflow/report/<stem>.rst, and
``figures`` draws each entry (``figures.DRAW``, one function per stem).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlm_dynamics.errors import InputError

# What a figure needs the table to hold. The plan says it of a config (``Plan.contents``),
# ``figures.table_contents`` of a table; both answer exactly these keys.
NEEDS = {
    "scores": "in-language probe or XNLI scores",
    "controls": "selectivity rows (a probe task with its control task)",
    "transfer": "a task with cross-lingual pairs",
    "bpc": "bits per character (metric bpc_pll, bpc_ar or bpc_mlm)",
    "alignment": "SimAlign word-alignment F1",
}


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its file stem, what the table must hold, where the report puts it.

    ``name`` ends in ``-{task}`` for figures drawn once per transfer task (``needs`` is then
    ``transfer``). ``reads``: the ``analyse`` tables it draws from
    (``analysis.findings.ANALYSIS_TABLES``).
    """

    name: str
    needs: str
    category: str
    reads: tuple[str, ...] = ()
    label: str = ""  # the report label of a per-task figure

    @property
    def per_task(self) -> bool:
        return self.name.endswith("-{task}")

    @property
    def stem(self) -> str:
        """The name without its task: the report caption's file name and the rule's name."""
        return self.name.removesuffix("-{task}")

    def name_for(self, wildcards) -> str:
        """The figure name of one job (``wildcards.task`` filled in for per-task figures)."""
        return self.name.format(task=wildcards.task) if self.per_task else self.name

    def names(self, contents: dict[str, bool], tasks: Sequence[str]) -> list[str]:
        if self.per_task:
            return [self.name.format(task=task) for task in tasks]
        return [self.name] if contents[self.needs] else []


FIGURES = (
    FigureSpec("in-language-curves", "scores", "In-language probing"),
    FigureSpec("layer-heatmaps", "scores", "In-language probing"),
    FigureSpec("final-layer-gap", "scores", "In-language probing", reads=("final_layer_gap",)),
    FigureSpec("onset", "scores", "Learning onset", reads=("onset",)),
    FigureSpec("selectivity", "controls", "In-language probing"),
    FigureSpec(
        "transfer-matrices-{task}", "transfer", "Cross-lingual transfer",
        label="matrices at selected steps",
    ),
    FigureSpec(
        "transfer-over-time-{task}", "transfer", "Cross-lingual transfer", label="pairs over time"
    ),
    FigureSpec("bpc", "bpc", "Language modelling"),
    FigureSpec("alignment-f1", "alignment", "Word alignment"),
)  # fmt: skip


def registered(name: str) -> tuple[FigureSpec, str | None]:
    """The registry entry of a figure name, and its task for a per-task figure."""
    for spec in FIGURES:
        if spec.per_task and name.startswith(spec.stem + "-"):
            return spec, name.removeprefix(spec.stem + "-")
        if name == spec.name:
            return spec, None
    raise InputError(f"figure {name!r}: not a registered figure")


def figure_names(contents: dict[str, bool], tasks: Sequence[str]) -> list[str]:
    """The figures drawn for a table holding ``contents`` (:data:`NEEDS`, each true or false)
    whose tasks with cross-lingual pairs are ``tasks``, in registry order."""
    if set(contents) != set(NEEDS) - {"transfer"}:
        raise ValueError(f"contents {sorted(contents)}: expected {sorted(NEEDS)} less transfer")
    return [name for spec in FIGURES for name in spec.names(contents, tasks)]
