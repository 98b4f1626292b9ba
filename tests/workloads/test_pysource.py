"""``pysource``: a character transformer on shipped excerpts of Python's standard library."""

from __future__ import annotations

import math
import re
import sys
import sysconfig
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from torch.func import stack_module_state

from adamz.search.studies import StudySpec, load_study_file
from adamz.training import RunConfig, train
from adamz.workloads import DataNotFoundError, clear_data_cache, get_workload, pysource
from adamz.workloads.pysource import CONTEXT, VOCABULARY, build_corpus, encode


def shipped(split: str) -> str:
    return (files("adamz.workloads") / "data" / f"pysource-{split}.txt").read_text("ascii")


def text_of(inputs: torch.Tensor, targets: torch.Tensor) -> str:
    """The text the examples were cut from: each input and its last target, in order."""
    pieces = torch.cat([inputs, targets[:, -1:]], dim=1).flatten().tolist()
    return "".join(VOCABULARY[token] for token in pieces)


STDLIB = Path(sysconfig.get_paths()["stdlib"])
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    sys.version.split()[0] != pysource.CORPUS_PYTHON_VERSION
    or not (STDLIB / "argparse.py").is_file(),
    reason="the corpus was cut from CPython 3.11.7's Lib/",
)
def test_the_shipped_corpus_is_cut_again_from_the_interpreter_s_lib_unchanged() -> None:
    assert build_corpus(STDLIB) == {split: shipped(split) for split in pysource.CORPUS_SOURCES}


def test_the_splits_are_the_three_texts_in_disjoint_65_character_examples() -> None:
    data = get_workload("pysource").load_data(None, "cpu")
    assert (data.num_train, data.num_val, data.num_test) == (9216, 1024, 1024)
    assert data.train_inputs.shape == data.train_targets.shape == (9216, CONTEXT)
    assert data.train_inputs.dtype == data.train_targets.dtype == torch.int64
    # each target is its input shifted by one character
    assert torch.equal(data.train_inputs[:, 1:], data.train_targets[:, :-1])
    # every character of each split's own text, in order, once: no text is in two splits
    assert text_of(data.train_inputs, data.train_targets) == shipped("train")
    assert text_of(data.val_inputs, data.val_targets) == shipped("validation")
    assert text_of(data.test_inputs, data.test_targets) == shipped("test")


def test_the_held_out_modules_share_no_line_with_the_training_modules() -> None:
    training_lines = {line.strip() for line in shipped("train").splitlines()}
    for split in ("validation", "test"):
        long_lines = {line.strip() for line in shipped(split).splitlines() if len(line) > 60}
        assert len(long_lines) > 300
        assert not long_lines & training_lines, split


def test_the_splits_are_the_same_on_every_load() -> None:
    workload = get_workload("pysource")
    first = workload.load_data(None, "cpu")
    clear_data_cache()
    again = workload.load_data(None, "cpu")
    assert again is not first
    for name in ("train_inputs", "val_inputs", "test_inputs", "test_targets"):
        assert torch.equal(getattr(first, name), getattr(again, name))


def test_with_fewer_examples_validation_is_the_contiguous_tail_of_the_first_ones() -> None:
    workload = get_workload("pysource")
    whole = workload.load_data(None, "cpu")
    part = workload.load_data(None, "cpu", train_size=50, test_size=7)
    assert (part.num_train, part.num_val, part.num_test) == (45, 5, 7)
    assert torch.equal(part.train_inputs, whole.train_inputs[:45])
    assert torch.equal(part.val_inputs, whole.train_inputs[45:50])
    assert torch.equal(part.test_targets, whole.test_targets[:7])


def test_a_changed_corpus_file_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(pysource.CORPUS_SHA256, "test", "0" * 64)
    with pytest.raises(
        DataNotFoundError,
        match=r"^pysource's test text at .*pysource-test\.txt is not the shipped one \(sha256 6b84",
    ):
        get_workload("pysource").load_data(None, "cpu")


@pytest.mark.parametrize(("text", "bad", "position"), [("ab\tc", "'\\t'", 2), ("naïve", "'ï'", 2)])
def test_characters_outside_the_vocabulary_are_refused(text: str, bad: str, position: int) -> None:
    with pytest.raises(
        ValueError, match=rf"^Invalid text: .* got {re.escape(bad)} at position {position}\.$"
    ):
        encode(text)


def test_encoding_gives_each_character_its_index_in_the_vocabulary() -> None:
    assert len(VOCABULARY) == 96
    assert encode("\n A~").tolist() == [0, 1, 34, 95]


def test_the_model_gives_next_character_logits_at_every_position() -> None:
    torch.manual_seed(0)
    model = get_workload("pysource").build_model()
    assert model(torch.randint(0, 96, (3, CONTEXT))).shape == (3, CONTEXT, 96)
    assert model(torch.randint(0, 96, (2, 10))).shape == (2, 10, 96)
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 150_000


def test_a_position_sees_only_the_characters_before_it() -> None:
    torch.manual_seed(0)
    model = get_workload("pysource").build_model().eval()
    tokens = torch.randint(0, 96, (1, CONTEXT))
    changed = tokens.clone()
    changed[0, 40] = (tokens[0, 40] + 1) % 96
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :40], after[:, :40])
    assert not torch.allclose(before[:, 40:], after[:, 40:])


def test_an_example_is_correct_when_its_last_character_is_predicted() -> None:
    workload = get_workload("pysource")
    targets = torch.randint(0, 96, (4, CONTEXT))
    outputs = torch.nn.functional.one_hot(targets, 96).float()  # every position right
    outputs[0, -1] = outputs[0, -1].roll(1)  # example 0: the last one wrong
    outputs[1, :-1] = outputs[1, :-1].roll(1, dims=-1)  # example 1: all but the last wrong
    correct = workload.count_correct(outputs, targets)
    assert correct.dtype == torch.int64
    assert correct.ndim == 0
    assert int(correct) == 3


def test_chance_is_a_uniform_guess_over_the_96_characters() -> None:
    workload = get_workload("pysource")
    assert workload.chance_value("val_loss") == pytest.approx(math.log(96))
    assert workload.chance_value("val_accuracy") == pytest.approx(1 / 96)


@pytest.mark.parametrize("optimizer", ["adamz", "adam", "adam-cosine"])
def test_the_shipped_studies_minimise_the_validation_loss(optimizer: str) -> None:
    spec = load_study_file(ROOT / "studies" / f"pysource-{optimizer}.yaml")
    assert isinstance(spec, StudySpec)
    assert (spec.workload["name"], spec.optimizer) == ("pysource", optimizer)
    assert (spec.metric, spec.direction) == ("val_loss", "minimize")


def test_the_protocol_trains_more_than_2000_steps() -> None:
    protocol = get_workload("pysource").protocol
    data = get_workload("pysource").load_data(None, "cpu")
    assert protocol.epochs * math.ceil(data.num_train / protocol.batch_size) == 2304


def test_a_short_run_lowers_the_validation_loss_well_below_chance() -> None:
    result = train(
        RunConfig("pysource", "adamz", {"lr": 0.003}, epochs=3, train_size=600, test_size=100)
    )
    assert result.stop_reason == "completed"
    assert result.steps == 3 * 17  # 540 examples to train on: 60 are held out
    val_loss = result.epoch_metrics["val_loss"]
    assert val_loss[2] < val_loss[1] < val_loss[0] < math.log(96)
    assert val_loss[2] < math.log(96) - 1
    assert result.final_metrics is not None
    assert 0.0 <= result.final_metrics["test_accuracy"] <= 1.0


def test_a_population_evaluates_in_parts_what_it_would_evaluate_whole() -> None:
    workload = get_workload("pysource")
    models = [workload.build_model() for _ in range(2)]
    params = {name: value.detach() for name, value in stack_module_state(models)[0].items()}
    inputs = torch.randint(0, 96, (2, pysource.EVALUATION_PART + 3, CONTEXT))
    with torch.no_grad():
        parts = workload.stacked_forward(params, inputs, training=False)
        whole = workload.stacked_forward(params, inputs, training=True)  # no dropout: same model
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
