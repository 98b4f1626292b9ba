"""Each section on hand-built studies whose right answer is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import optuna
import pytest
from report_helpers import DISTRIBUTIONS, lr_only, storage_of, synthetic_study, with_storage

from adamz.reports import ReportError, load_study_data
from adamz.reports._budget import budget_section
from adamz.reports._controller import controller_section
from adamz.reports._importance import importance_section, ranked_estimator, ranked_params
from adamz.reports._pruning import pruning_section
from adamz.reports._robustness import robustness_section, tunability_section
from adamz.reports._sensitivity import CONTOUR_GRID, sensitivity_section

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def lr_study() -> optuna.Study:
    return synthetic_study(lr_only, n_trials=80)


def test_the_only_parameter_the_objective_reads_dominates_both_importances(lr_study):
    section = importance_section(
        load_study_data(lr_study, storage_of(lr_study)), repeats=3, fanova_trees=8
    )
    for key in ("ped_anova", "fanova"):
        means = {name: result["mean"] for name, result in section.numbers[key].items()}
        assert max(means, key=means.__getitem__) == "lr"
        assert means["lr"] > 2 * max(mean for name, mean in means.items() if name != "lr")
        assert all(result["std"] >= 0 for result in section.numbers[key].values())
    assert len(section.figures) == 1
    assert "lr" in section.summary[0]
    # The null: patience, which the objective never reads, is no more important than an
    # inert parameter drawn beside the trials; lr is.
    for key in ("ped_anova", "fanova"):
        assert section.numbers["above_null"][key] == ["lr"]
    assert section.numbers["stable_ranking"] is True
    figure = section.figures[0]
    assert [trace.name for trace in figure.data if trace.type == "scatter"] == [
        "PED-ANOVA: null (largest inert parameter, mean)",
        "fANOVA: null (largest inert parameter, mean)",
    ]


def test_estimators_that_disagree_give_no_stable_ranking_and_the_contour_names_its_estimator(
    lr_study,
):
    data = load_study_data(lr_study, storage_of(lr_study))
    section = importance_section(data, repeats=2, fanova_trees=4)
    section.numbers["fanova"]["patience"]["mean"] = 2.0  # as if fANOVA put patience first
    assert ranked_params(section, data.params)[0] == "lr"  # the estimator named: PED-ANOVA
    assert ranked_estimator(section) == "PED-ANOVA"
    contour = sensitivity_section(data, ranked_params(section, data.params), "PED-ANOVA")
    assert contour.figures[-1].layout.title.text.endswith("the top two by PED-ANOVA")


def test_the_only_parameter_the_objective_reads_is_the_most_sensitive(lr_study):
    section = sensitivity_section(
        load_study_data(lr_study, storage_of(lr_study)), ["lr", "patience"]
    )
    scores = section.numbers["scores"]
    assert max(scores, key=scores.__getitem__) == "lr"
    assert scores["patience"] < 0.5 * scores["lr"]
    assert section.numbers["contour_pair"] == ["lr", "patience"]
    assert len(section.figures) == 2


def test_the_sensitivity_of_an_accuracy_is_in_points_like_the_rest_of_the_page(lr_study):
    data = load_study_data(lr_study, storage_of(lr_study))
    fraction = sensitivity_section(data, ["lr", "patience"])
    accuracy = replace(data, definition={"metric": "val_accuracy"})
    points = sensitivity_section(accuracy, ["lr", "patience"])
    assert points.numbers["score_unit"] == "points"
    assert points.numbers["scores"]["lr"] == pytest.approx(100 * fraction.numbers["scores"]["lr"])
    moved = f"{points.numbers['scores']['lr']:.4g} points of val_accuracy"
    assert f"its trend moves {moved} (from the 80 completed trials" in points.summary[0]
    assert f"{fraction.numbers['scores']['lr']:.4g} in value" in fraction.summary[0]


def test_a_flat_objective_is_fully_robust():
    section = robustness_section(
        load_study_data(*with_storage(synthetic_study(lambda p: 0.8, n_trials=20)))
    )
    assert section.numbers["within_1pct"] == 1.0
    assert section.numbers["within_5pct"] == 1.0


def test_robustness_counts_trials_within_one_and_five_percent():
    values = iter([1.0, 0.995, 0.97, 0.5])
    study = synthetic_study(lambda p: next(values), n_trials=4)
    section = robustness_section(load_study_data(study, storage_of(study)))
    assert section.numbers["within_1pct"] == pytest.approx(0.5)
    assert section.numbers["within_5pct"] == pytest.approx(0.75)


def test_tunability_is_the_gain_of_the_best_over_each_named_reference_point():
    values = iter([0.5, 0.7, 0.6])
    section = tunability_section(
        load_study_data(*with_storage(synthetic_study(lambda p: next(values), n_trials=3)))
    )
    references = section.numbers["references"]
    assert references["library defaults"]["trial"] == 0
    assert references["library defaults"]["gain"] == pytest.approx(0.2)
    assert references["paper settings"]["trial"] == 1
    assert references["paper settings"]["gain"] == pytest.approx(0.0)
    assert "Tuning raised value by 0.2 from the library defaults" in section.summary[0]
    assert section.summary[1].startswith(  # the paper settings' trial is the best one
        "Tuning found nothing better than the paper settings: trial #1 (0.7) is still the best"
    )


def test_an_older_studys_defaults_trial_is_read_as_the_paper_settings():
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 0.5}, user_attrs={"enqueued": "defaults"})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    references = tunability_section(load_study_data(study, storage_of(study))).numbers["references"]
    assert list(references) == ["paper settings"]
    assert references["paper settings"]["value"] == 0.5


def test_a_reference_point_whose_first_attempt_failed_is_read_from_its_retry():
    study = optuna.create_study(direction="maximize")
    for _ in range(2):  # a stopped worker's attempt, then its retry (with the same label)
        study.enqueue_trial({"x": 0.5}, user_attrs={"enqueued": ["library defaults"]})
    first = study.ask()
    first.suggest_float("x", 0, 1)
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    section = tunability_section(load_study_data(study, storage_of(study)))
    assert section.numbers["references"]["library defaults"]["trial"] == 1
    assert not any("ended FAIL" in line for line in section.skipped)


def test_tunability_is_skipped_without_a_defaults_trial():
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    section = tunability_section(load_study_data(study, storage_of(study)))
    assert section.numbers == {}
    assert "defaults" in section.skipped[0]


def test_budget_curves_of_several_studies_side_by_side_with_a_band(lr_study):
    flat = synthetic_study(lambda p: 0.8, n_trials=20, name="flat")
    section = budget_section(
        [load_study_data(lr_study, storage_of(lr_study)), load_study_data(flat, storage_of(flat))],
        resamples=50,
    )
    assert set(section.numbers) == {"synthetic", "flat"}
    curve = section.numbers["synthetic"]
    assert np.all(np.diff(curve["expected_best"]) >= -1e-12)  # never worse with more trials
    assert np.all(np.array(curve["band_low"]) <= np.array(curve["band_high"]))
    assert section.numbers["flat"]["expected_best"][-1] == pytest.approx(0.8)
    assert len(section.figures[0].data) == 4


def test_best_so_far_is_drawn_from_the_trials_that_improved_it_and_the_last(lr_study):
    section = budget_section([load_study_data(lr_study, storage_of(lr_study))], resamples=10)
    best_so_far = np.array(section.numbers["synthetic"]["best_so_far"])
    epochs = np.array(section.numbers["synthetic"]["cumulative_epochs"])
    [drawn] = section.figures[1].data
    improved = np.flatnonzero(np.diff(best_so_far, prepend=-np.inf) > 0)
    shown = np.union1d(improved, [len(best_so_far) - 1])
    assert len(drawn.x) == len(shown) < len(best_so_far)
    assert np.array_equal(drawn.x, epochs[shown])
    assert np.array_equal(drawn.y, best_so_far[shown])  # the step line is the same


def test_the_contour_of_many_trials_is_on_a_coarse_grid_that_keeps_the_best_value():
    study = synthetic_study(lr_only, n_trials=2 * CONTOUR_GRID, with_records=False)
    data = load_study_data(study, storage_of(study))
    contour = sensitivity_section(data, ["lr", "patience"]).figures[-1]
    [surface] = [trace for trace in contour.data if trace.type == "contour"]
    assert len(surface.x) <= CONTOUR_GRID
    assert len(surface.y) <= CONTOUR_GRID
    assert np.nanmax(surface.z) == pytest.approx(float(data.values.max()))
    assert len(contour.data[1].x) == 2 * CONTOUR_GRID  # every trial's marker


def test_the_timeline_hover_is_a_few_lines_per_trial(lr_study):
    timeline = pruning_section(load_study_data(lr_study, storage_of(lr_study))).figures[-1]
    texts = [text for trace in timeline.data for text in trace.text]
    assert len(texts) == 80
    assert texts[0].split("<br>")[0].startswith("trial 0: complete, value 0.")
    assert all(len(text.split("<br>")) <= 8 for text in texts)  # state, 5 parameters, worker
    assert not any("user_attrs" in text for text in texts)


def test_budget_curves_of_a_minimised_study_decrease():
    study = optuna.create_study(direction="minimize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=15)
    curve = budget_section([load_study_data(study, storage_of(study))], resamples=20).numbers[
        study.study_name
    ]
    assert np.all(np.diff(curve["expected_best"]) <= 1e-12)


def test_controller_counts_split_into_better_and_worse_halves(lr_study):
    section = controller_section(load_study_data(lr_study, storage_of(lr_study)))
    groups = section.numbers["groups"]
    assert groups["good"]["mean_overshoots"] < groups["bad"]["mean_overshoots"]
    assert groups["good"]["trials"] + groups["bad"]["trials"] == 80
    assert len(section.numbers["best_trial_lr_at_epoch_end"]) == 2


def test_controller_section_is_skipped_without_controller_records():
    section = controller_section(
        load_study_data(*with_storage(synthetic_study(with_records=False, n_trials=5)))
    )
    assert section.figures == []
    assert "controller" in section.skipped[0]


@pytest.mark.parametrize(
    ("states", "message"),
    [
        ([], "no trials yet"),
        ([optuna.trial.TrialState.FAIL, optuna.trial.TrialState.FAIL], "2 fail"),
    ],
)
def test_a_study_without_completed_trials_cannot_be_reported(states, message):
    study = optuna.create_study()
    for state in states:
        study.add_trial(optuna.trial.create_trial(state=state))
    with pytest.raises(ReportError, match=message):
        load_study_data(study, storage_of(study))


def test_each_contour_axis_spans_the_parameter_it_is_labelled_with(lr_study):
    data = load_study_data(lr_study, storage_of(lr_study))
    # ranked "patience" first: Optuna's plot_contour puts "lr" on x anyway (by name)
    contour = sensitivity_section(data, ["patience", "lr"]).figures[-1]
    x_name, y_name = contour.layout.xaxis.title.text, contour.layout.yaxis.title.text
    assert (x_name, y_name) == ("lr", "patience")
    assert "over lr (x) × patience (y)" in contour.layout.title.text
    surface, markers = contour.data[0], contour.data[1]
    assert (surface.type, markers.mode) == ("contour", "markers")
    for name, grid, trials in ((x_name, surface.x, markers.x), (y_name, surface.y, markers.y)):
        distribution = DISTRIBUTIONS[name]
        low, high = distribution.low, distribution.high
        assert low <= min(trials) <= max(trials) <= high, name
        # the grid: Optuna pads the trials' range by 5 % on each side (log scale if log)
        scale = np.log10 if distribution.log else np.asarray
        padding = 0.1 * (scale(high) - scale(low))
        grid = scale(np.asarray(grid, dtype=float))
        assert scale(low) - padding <= grid.min() <= grid.max() <= scale(high) + padding, name


def test_where_ranking_is_refused_no_chart_ranks_and_no_curve_is_smoothed():
    data = load_study_data(
        *with_storage(synthetic_study(lr_only, n_trials=8))
    )  # 5 parameters: ranking needs 20
    importance = importance_section(data, repeats=2, fanova_trees=4)
    assert importance.numbers["ranked"] is False
    assert importance.figures == []
    assert ranked_params(importance, data.params) == data.params
    section = sensitivity_section(data, ranked_params(importance, data.params))
    assert len(section.figures) == 1  # the slices, no contour of a "most important pair"
    [slices] = section.figures
    assert {trace.mode for trace in slices.data} == {"markers"}  # the trials, no trend or band
    assert section.numbers["scores"] == {}
    assert "contour_pair" not in section.numbers
    assert any("too few completed trials to rank" in reason for reason in section.skipped)
    assert "without a trend" in section.summary[0]


def test_with_enough_trials_importance_orders_the_slices(lr_study):
    data = load_study_data(lr_study, storage_of(lr_study))
    importance = importance_section(data, repeats=2, fanova_trees=4)
    assert importance.numbers["ranked"] is True
    assert ranked_params(importance, data.params)[0] == "lr"


def test_robustness_draws_no_curve_below_the_trials_a_ranking_needs():
    few = robustness_section(load_study_data(*with_storage(synthetic_study(n_trials=5))))
    assert few.figures == []
    assert few.skipped == [
        "the curve of distances to the best: too few completed trials (5, it needs 20, as a "
        "ranking does)"
    ]
    assert "too few to say how forgiving the optimizer is" in few.summary[0]
    enough = robustness_section(load_study_data(*with_storage(synthetic_study(n_trials=24))))
    assert len(enough.figures) == 1


def test_tunability_says_lowered_for_a_metric_where_lower_is_better():
    values = iter([0.5, 0.3, 0.4])
    study = synthetic_study(lambda p: next(values), n_trials=3, direction="minimize")
    section = tunability_section(load_study_data(*with_storage(study)))
    assert section.summary[0].startswith("Tuning lowered value by 0.2 from the library defaults")
    assert "lower is better" in section.summary[0]


def test_a_page_opened_without_plotly_says_so_in_one_line(tmp_path):
    from adamz.reports._data import Section
    from adamz.reports._html import write_html

    write_html(tmp_path / "report.html", "t", [("Q", [Section("Q")])])
    page = (tmp_path / "report.html").read_text()
    assert (
        '<p id="no-plotly" hidden>The charts cannot be drawn: this page loads plotly.js from'
        in page
    )
    assert 'if (typeof Plotly === "undefined")' in page
