"""Reports on studies: importance, sensitivity, robustness, tunability, budget curves, the
AdamZ controller, pruning and workers, the sensitivity atlas of a sensitivity study; the seed
confirmation and the search replicates a comparison runs first; and the export of a
recommended configuration.

Import direction: ``adamz.reports`` reads studies (Optuna, ``adamz.search``'s stored
definitions); nothing below it imports the reports.
"""

from adamz.reports._build import ReportFiles, build_report
from adamz.reports._confirm import (
    TOP,
    confirmation_spec,
    fresh_seed_study,
    reuse_finished_runs,
)
from adamz.reports._data import ReportError, Section, StudyData, load_study_data
from adamz.reports._export import (
    MARGIN,
    PAPER_DEFAULTS,
    export_config,
    robust_candidates,
    save_config,
    validated_choice,
    validation_spec,
    validation_table,
    write_config,
)
from adamz.reports._replicates import EQUIVALENCE_MARGIN, page_unit
from adamz.reports._search_replicates import (
    confirmation_first_seed,
    replicate_name,
    replicate_of,
    search_replicate_spec,
)

__all__ = [
    "EQUIVALENCE_MARGIN",
    "MARGIN",
    "PAPER_DEFAULTS",
    "TOP",
    "ReportError",
    "ReportFiles",
    "Section",
    "StudyData",
    "build_report",
    "confirmation_first_seed",
    "confirmation_spec",
    "export_config",
    "fresh_seed_study",
    "load_study_data",
    "page_unit",
    "replicate_name",
    "replicate_of",
    "reuse_finished_runs",
    "robust_candidates",
    "save_config",
    "search_replicate_spec",
    "validated_choice",
    "validation_spec",
    "validation_table",
    "write_config",
]
