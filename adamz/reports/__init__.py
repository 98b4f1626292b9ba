"""Reports on studies: importance, sensitivity, robustness, tunability, budget curves, the
AdamZ controller, pruning and workers; and the export of a recommended configuration.

Import direction: ``adamz.reports`` reads studies (Optuna, ``adamz.search``'s stored
definitions); nothing below it imports the reports.
"""

from adamz.reports._build import ReportFiles, build_report
from adamz.reports._data import ReportError, Section, StudyData, load_study_data

__all__ = [
    "ReportError",
    "ReportFiles",
    "Section",
    "StudyData",
    "build_report",
    "load_study_data",
]
