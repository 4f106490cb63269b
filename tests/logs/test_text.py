"""The generic text reader on real console logs of each framework (tests/fixtures/logs/*/log.txt,
each with its SOURCE.txt): the values one reads in them by eye, the step each line names, train
vs eval, roles and units — and the inputs issue 12 found crashing readers (``inf`` counts,
400-digit numbers) read as data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stabletrain.errors import LogReadError
from stabletrain.logs.read import read_run
from stabletrain.logs.readers import text
from stabletrain.logs.readers.base import RunData
from stabletrain.records import StepRecord

FIXTURES = Path(__file__).parents[1] / "fixtures" / "logs"


def _log(name: str) -> Path:
    return FIXTURES / name / "log.txt"


def _train(data: RunData) -> list[StepRecord]:
    return [r for r in data.records if r.kind == "train"]


def _evals(data: RunData) -> list[StepRecord]:
    return [r for r in data.records if r.kind == "eval"]


def test_every_fixture_names_its_source_and_licence() -> None:
    for d in sorted(p for p in FIXTURES.iterdir() if (p / "log.txt").exists()):
        source = (d / "SOURCE.txt").read_text()
        assert "https://github.com/" in source and "licence" in source, d.name


def test_fairseq_simple_format_steps_are_num_updates() -> None:
    data = read_run(_log("fairseq_simple_940"))
    assert data.dialect == "fairseq" and data.facts.format == "fairseq"
    train = _train(data)
    assert [r.step for r in train] == [445, 495, 545, 595, 645]
    first = train[0]
    assert (first.loss, first.grad_norm, first.lr, first.loss_scale) == (
        11.521,
        1.543,
        8.90889e-05,
        2.0,
    )
    assert first.epoch == 1.0 and first.metrics["ppl"] == 1886.05
    (ev,) = _evals(data)  # "| epoch 001 | valid on 'valid' subset | valid_loss 8.11425 | ..."
    assert ev.step == 600 and ev.eval_loss == 8.11425
    assert data.roles["gnorm"] == "grad_norm" and data.roles["wps"] == "throughput"
    assert data.roles["valid_loss"] == "eval_loss"
    # a share of clipped updates (its own role), not a clip coefficient
    assert data.roles["clip"].startswith("clip_fraction") and first.clip_coef is None
    # kept under its role's name, as a fraction, for the clipping detector (``clip=0%``)
    assert first.metrics["clip_fraction"] == 0.0 and "clip" not in first.metrics
    assert (data.lines_total, data.lines_understood) == (6, 6)


def test_fairseq_clip_share_percent_with_and_without_the_sign(tmp_path: Path) -> None:
    # fairseq 2018 prints ``clip=100%``; fairseq >= 0.9 prints the same percentage without the
    # sign (``clip=37.5``): both are a share of updates, read as a fraction
    log = tmp_path / "train.log"
    log.write_text(
        "| epoch 001:    100 / 500 loss=9.1, gnorm=2.1, clip=37.5, lr=0.001, num_updates=100\n"
        "| epoch 001:    200 / 500 loss=8.1, gnorm=2.1, clip=100%, lr=0.001, num_updates=200\n"
    )
    data = read_run(log)
    assert [r.metrics["clip_fraction"] for r in _train(data)] == [0.375, 1.0]


def test_fairseq_epoch_summaries_and_valid_lines() -> None:
    data = read_run(_log("fairseq_epoch_514"))
    assert [r.step for r in _train(data)] == [21896, 22897, 23897, 24633, 25634]
    assert [(r.step, r.eval_loss) for r in _evals(data)] == [(21896, 6.43844), (24633, 6.37204)]


def test_fairseq_json_format_with_string_values() -> None:
    data = read_run(_log("fairseq_json_2493"))
    train = _train(data)
    assert [(r.step, r.epoch, r.loss) for r in train] == [
        (643, 21.0, 816.933),
        (674, 22.0, 788.127),
    ]
    assert train[0].grad_norm == 1000.72 and train[0].loss_scale == 0.5
    assert train[0].lr == 2.49835e-05 and data.dialect == "fairseq"


def test_torchvision_metric_logger_takes_the_value_not_the_running_average() -> None:
    data = read_run(_log("torchvision_sew_resnet_10"))
    train = _train(data)
    assert [r.step for r in train] == list(range(103, 110))  # epoch 0: 0 * 5005 + i
    assert train[0].loss == 6.8536 and train[0].lr == 0.1 and train[0].step_time == 2.5401
    assert train[0].accuracy == 0.0 and train[0].metrics["img/s"] == pytest.approx(13.6283098)
    assert data.roles["acc1"].startswith("accuracy (percent")  # torchvision prints percent
    assert data.roles["img/s"] == "throughput" and "eta" not in data.roles


def test_torchvision_detection_log_with_total_time_line() -> None:
    data = read_run(_log("torchvision_maskrcnn_thesis"))
    assert [(r.step, r.loss) for r in _train(data)][:3] == [(0, 8.2773), (1, 7.5953), (2, 7.5953)]
    assert _train(data)[0].metrics["loss_objectness"] == 4.7510
    assert data.lines_understood == data.lines_total == 7  # the "Total time" line is context


def test_mmengine_epoch_position_and_nan_grad_norm() -> None:
    data = read_run(_log("mmengine_yoloworld_190"))
    train = _train(data)
    assert train[0].step == 99 * 4309 + 3200 and train[0].epoch == 100.0
    assert math.isnan(train[0].grad_norm or 0.0) and train[0].loss == 1102.9471
    assert train[1].grad_norm == 971.4538 and train[0].lr == 5.96e-05
    assert "base_lr" not in data.roles and data.facts.format == "mmengine"


def test_mmcv_text_logger_with_a_diverging_start() -> None:
    data = read_run(_log("mmcv_detectors_3446"))
    train = _train(data)
    assert [r.step for r in train] == [50, 100, 2 * 1749 + 50, 2 * 1749 + 100, 2 * 1749 + 150]
    assert train[0].loss == 59307.8674 and train[0].grad_norm == pytest.approx(3.8018984e12)
    assert train[0].step_time == 1.807 and train[0].metrics["s0.loss_cls"] == 485.9971
    assert data.lines_total == 7 and data.lines_understood == 5  # two start-up lines


def test_keras_epoch_headers_and_val_metrics() -> None:
    data = read_run(_log("keras_cifar_8680"))
    train, evals = _train(data), _evals(data)
    assert [r.epoch for r in train] == [39.0, 40.0, 41.0, 42.0, 43.0, 44.0]
    assert train[0].step == 39 * 1562 and train[1].step == 40 * 1562
    assert (train[0].loss, train[0].accuracy) == (0.7744, 0.7344)
    assert (evals[0].step, evals[0].eval_loss, evals[0].eval_accuracy) == (
        39 * 1562,
        0.6673,
        0.7737,
    )
    assert data.facts.format == "keras"


def test_keras_nan_loss_and_step_time_from_ms_per_step() -> None:
    train = _train(read_run(_log("keras_nan_handson_398")))
    assert len(train) == 5 and all(math.isnan(r.loss or 0.0) for r in train)
    assert train[0].step_time == pytest.approx(0.002)  # "1s 2ms/step"


def test_keras_progress_lines_without_a_header() -> None:
    train = _train(read_run(_log("keras_progress_moire_25")))
    assert [(r.step, r.loss, r.accuracy) for r in train][:2] == [
        (1, 0.6917, 0.5938),
        (2, 0.6912, 0.5938),
    ]


def test_torchtitan_rank_prefix_and_thousands_separator() -> None:
    data = read_run(_log("torchtitan_rank_prefix_3393"))
    train = _train(data)
    assert [r.step for r in train] == list(range(14, 22))
    assert train[0].loss == 3.24405 and train[0].grad_norm == 0.8319 and train[0].rank == 0
    assert train[0].metrics["tps"] == 7282.0 and data.roles["tps"] == "throughput"
    assert "memory" not in train[0].metrics and data.facts.format == "torchtitan"


def test_torchtitan_lines_every_rank_printed_stay_in_raw() -> None:
    data = read_run(_log("torchtitan_repeated_2389"))
    assert len(data.raw) == 7 and {r.step for r in data.raw} == {4}
    assert all(r.loss == 7.62585 for r in data.raw) and len(data.records) == 1


def test_rank_prefixed_duplicates_keep_their_rank() -> None:
    lines = _log("torchtitan_rank_prefix_3393").read_text().splitlines()[:3]
    doubled = "\n".join(
        f"{p}{line[len('[rank0]:') :]}" for line in lines for p in ("[rank0]:", "[rank1]:")
    )
    data = text.parse_text(doubled, Path("x.log"))
    assert [(r.step, r.rank) for r in data.raw] == [
        (14, 0),
        (14, 1),
        (15, 0),
        (15, 1),
        (16, 0),
        (16, 1),
    ]
    assert any("2 ranks" in n for n in data.notes)


def test_free_form_research_scripts() -> None:
    deeplab = _train(read_run(_log("freeform_deeplab_5")))
    assert (deeplab[0].step, deeplab[0].loss, deeplab[0].step_time) == (13104, 0.712, 1.011)
    mask = _train(read_run(_log("freeform_maskrcnn_1347")))  # "iteration : 6, losses : ..."
    assert [r.step for r in mask] == list(range(1, 11))
    assert mask[5].loss == 1436176.25 and math.isnan(mask[6].loss or 0.0)
    bigdl = read_run(_log("freeform_bigdl_infinity_1486"))  # "Loss is Infinity."
    b = _train(bigdl)
    assert [r.step for r in b] == [45457, 45458, 45459] and b[0].epoch == 64.0
    assert b[0].loss == 1.2645824 and b[2].loss == math.inf
    assert b[0].lr == pytest.approx(0.04628416419774555)  # "Current learning rate is ..."


def test_epoch_lines_without_step_use_the_epoch_and_say_so() -> None:
    data = read_run(_log("freeform_automap_4"))  # "Epoch 81, Loss: ..., ValLoss: ..."
    assert [r.step for r in _train(data)] == [81, 82, 83, 84, 85, 86]
    assert _evals(data)[0].eval_loss == pytest.approx(0.00010864507203223184)
    assert any("epoch number is used as the step" in n for n in data.notes)


def test_average_meter_lines_after_a_tqdm_validation_bar() -> None:
    data = read_run(_log("imagenet_meter_deepspeech_485"))
    train = _train(data)
    assert train[0].step == 20 * 1930 + 1390 and train[0].loss == 2.5681
    assert train[0].step_time == 0.690  # "Time 0.690 (0.986)": the value, not the average


def test_pasted_log_quotes_ansi_tqdm_and_timestamps_read_the_same() -> None:
    """The same real lines quoted in a GitHub reply (``> ``), coloured, behind tqdm redraws and a
    timestamp give the same records."""
    plain = _log("mmengine_yoloworld_190").read_text()
    pasted = "\n".join(
        f"> \x1b[32m 50%|█████     | 5/10 [00:05<00:05]\r2024-03-26 00:47:15,001 {line}\x1b[0m"
        for line in plain.splitlines()
    )
    a = read_run(_log("mmengine_yoloworld_190"))
    b = text.parse_text(pasted, Path("pasted.md"))
    assert [r.to_json() for r in b.raw] == [r.to_json() for r in a.raw]


def test_issue12_non_finite_and_huge_numbers_are_data(real_logs: Path) -> None:
    """``consumed samples: inf``, a 400-digit loss, ``1.36e15`` then ``inf`` (a real Megatron line
    with those values put in) read as data, never a crash or an invented count."""
    log = real_logs / "bigscience_tr8b_104B" / "megatron_iterations_extracted.log"
    line = log.read_text().splitlines()[0]
    assert "216960" in line and "3.876781E+00" in line
    rows = [
        line.replace("216960", "inf"),
        line.replace("6502/", "6503/").replace("3.876781E+00", "1.36E+15"),
        line.replace("6502/", "6504/").replace("3.876781E+00", "inf"),
        line.replace("6502/", "6505/").replace("3.876781E+00", "9" * 400),
    ]
    data = text.parse_text("\n".join(rows), Path("m.log"))
    r = {x.step: x for x in data.raw}
    assert r[6502].samples is None and r[6502].metrics["consumed samples"] == math.inf
    assert r[6503].loss == 1.36e15 and r[6504].loss == math.inf and r[6505].loss == math.inf
    assert r[6503].samples == 216960  # the line's own count, read as an int


def test_hf_console_dicts_without_steps_are_numbered_and_said_so(real_logs: Path) -> None:
    data = read_run(real_logs / "issue_timemoe_71_intermittent_nan" / "log.txt")
    assert [r.step for r in data.records] == list(range(1, 10))
    assert any("numbered by their order" in n for n in data.notes)


def test_text_without_training_records_is_empty_not_clean(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("Using device: cuda\nModel has 124M parameters\nTorch seed: 1\nDone.\n")
    data = text.read(f)
    assert data.raw == [] and (data.lines_total, data.lines_understood) == (4, 0)
    with pytest.raises(LogReadError, match=r"no training records .*tried: text \(megatron, "):
        read_run(f)


def test_user_mapping_names_a_metric_the_reader_does_not_know() -> None:
    data = text.parse_text(
        "step 1 | objective 3.5\nstep 2 | objective 3.1\n", Path("x.log"), {"loss": "objective"}
    )
    assert [(r.step, r.loss) for r in data.raw] == [(1, 3.5), (2, 3.1)]
    assert data.roles["objective"] == "loss"


def test_a_huge_line_is_skipped_in_linear_time(tmp_path: Path) -> None:
    """A 5 MB one-line blob (issue 12: a 50 MB one-line input took 26 s then a traceback) is
    counted, said in the notes, and does not hide the records around it."""
    line = _log("torchtitan_rank_prefix_3393").read_text().splitlines()[0]
    f = tmp_path / "blob.log"
    f.write_text(f"{line}\n{'x1 ' * 1_700_000}\n{line.replace('step: 14', 'step: 15')}\n")
    data = read_run(f)
    assert [r.step for r in data.records] == [14, 15]
    assert (data.lines_total, data.lines_understood) == (3, 2)
    assert any("longer than" in n for n in data.notes)


def test_prose_and_code_that_mention_metrics_are_no_training_records() -> None:
    """This project's README and the guard's source mention losses, clip values and epochs in
    prose; none of it is a training record (a junk record would get a verdict)."""
    root = Path(__file__).parents[2]
    for f in (root / "README.md", root / "src" / "stabletrain" / "guard" / "guard.py"):
        data = text.read(f)
        assert data.raw == [], f.name
        assert data.lines_understood is not None and data.lines_total is not None
        assert data.lines_understood < data.lines_total / 5


def test_timm_train_lines_phase_label_holds_the_epoch() -> None:
    data = read_run(_log("timm_mobilenet_814"))  # "Train: 1 [ 350/5004 (  7%)]  Loss: ..."
    train = _train(data)
    assert [(r.step, r.epoch) for r in train][:2] == [(350, 1.0), (400, 1.0)]
    assert train[0].loss == 6.732388 and train[0].lr == 0.02133 and train[0].step_time == 1.271
    assert "Train" not in data.roles and not any("numbered" in n for n in data.notes)


def test_lightning_progress_bar_redraws() -> None:
    data = read_run(_log("lightning_progress_4225"))
    # the postfix shows the loss of the step before until it is updated: the latest per step wins
    assert [(r.step, r.loss) for r in data.records] == [
        (1, 10.473),
        (2, 10.224),
        (3, 10.047),
        (4, 9.926),
        (5, 9.847),
    ]
    assert data.records[0].step_time == 8.77 and "v_num" not in data.roles
    assert "Training" not in data.roles  # "Training:   0%|" is a label, not a metric


def test_sagemaker_mpirun_prefix_and_escaped_carriage_returns() -> None:
    data = read_run(_log("lightning_sagemaker_mpi_6"))  # "[1,mpirank:0,algo-1]<stdout>:#015Epoch 0"
    assert [(r.step, r.kind, r.rank) for r in data.raw] == [
        (1, "train", 0),
        (2, "train", 0),
        (2, "eval", 0),
    ]
    assert data.raw[2].eval_accuracy == 0.166 and "mpirank" not in data.roles
    assert any("redraw" in n for n in data.notes)


def test_whitespace_table_header_then_rows() -> None:
    """YOLO's console: a header of column names, then one row per epoch (``9/55  9.02G  0.1295
    ...``); its validation table names no step and no known metric, so it makes no record."""
    data = text.read(_log("ultralytics_console_21765"))
    assert [(r.step, r.epoch) for r in data.raw] == [(9, 9.0), (10, 10.0)]
    assert data.raw[0].metrics == {"box_loss": 0.1295, "cls_loss": 7.585, "dfl_loss": 3.256}
    assert data.dialect == "table" and "GPU_mem" not in data.roles
    # no total loss in YOLO's console: the loss is the sum of its printed terms, as the
    # ultralytics results.csv reader takes it (logs.readers.standins), and the report says so
    run = read_run(_log("ultralytics_console_21765"))
    assert run.records[0].loss == pytest.approx(0.1295 + 7.585 + 3.256)
    assert any("sum of box_loss, cls_loss, dfl_loss" in n for n in run.notes)


def test_a_scripts_own_table() -> None:
    data = text.parse_text(
        "epoch  train_loss  val_loss  lr\n1  2.31  2.40  0.001\n2  1.90  2.10  0.001\n",
        Path("table.log"),
    )
    assert data.lines_understood == 3
    prose = text.parse_text("saving checkpoint to out/ckpt_1000.pt\nstep 1 | loss 2\n", Path("x"))
    assert (prose.lines_total, prose.lines_understood) == (2, 1)  # a sentence is no table header
    assert [(r.step, r.kind, r.loss, r.eval_loss) for r in data.raw] == [
        (1, "train", 2.31, None),
        (1, "eval", None, 2.40),
        (2, "train", 1.90, None),
        (2, "eval", None, 2.10),
    ]


def test_megatron_core_and_nemo_lines() -> None:
    core = _train(
        read_run(_log("megatron_core_756"))
    )  # " [2024-04-06 03:02:12] iteration 71/ 100 |"
    assert [r.step for r in core] == [71, 72, 73]
    assert core[0].loss == 1.818812 and core[0].grad_norm == 1.3 and core[0].step_time == 5.3616
    assert core[0].metrics["throughput per GPU"] == 243.6
    nemo = read_run(
        _log("nemo_megatron_10128")
    )  # "... | global_step: 0 | reduced_train_loss: 11.02"
    assert [(r.step, r.loss) for r in _train(nemo)][:2] == [(0, 11.02), (1, 9.761)]
    assert nemo.roles["reduced_train_loss"] == "loss" and _train(nemo)[0].samples == 32


def test_lines_printed_twice_by_two_log_handlers_stay_in_raw() -> None:
    """``INFO:tensorflow:`` and absl's ``I0912 11:40:27.956218 ... model_lib_v2.py:652]`` print
    every record twice; both copies stay in ``raw`` for duplicate-logging, one is analysed."""
    tf1 = read_run(
        _log("tf_slim_doubled_2980")
    )  # "global step 1: loss = 79.3501 (57.126 sec/step)"
    assert [r.step for r in tf1.raw] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    first = tf1.records[0]
    assert (first.step, first.loss, first.step_time) == (1, 79.3501, 57.126)
    tf2 = read_run(_log("tf2_objdet_glog_6"))  # "Step 200 per-step time 0.831s loss=1.192"
    assert [r.step for r in tf2.raw] == [100, 200, 200, 300, 300, 400, 400, 500, 500]
    assert tf2.raw[1].to_json() == tf2.raw[2].to_json()  # the glog prefix is not a metric
    assert (tf2.records[1].loss, tf2.records[1].step_time) == (1.192, 0.831)


_FRAGMENTS = [
    "loss",
    "lm loss",
    "val_loss",
    "grad norm",
    "step",
    "iteration",
    "Epoch",
    "Test:",
    "lr",
    "acc1",
    "time",
    "consumed samples",
    ": ",
    "=",
    " ",
    " | ",
    ", ",
    " - ",
    "/",
    "[",
    "]",
    "(",
    ")",
    "%",
    "ms",
    "s/it",
    "{'loss': ",
    "}",
    '{"epoch": "',
    '"}',
    "> ",
    "[rank1]:",
    "\x1b[32m",
    "\r",
    "\n",
    "#015",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1.36e15",
    "9" * 400,
    "1e999",
    "0",
    "7",
    "2.5",
    "10,050",
    "-3",
    "█",
    "é",
]


@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60))
@settings(max_examples=200, deadline=None)
def test_any_mix_of_log_fragments_is_data_never_a_crash(parts: list[str]) -> None:
    data = text.parse_text("".join(parts), Path("fuzz.log"))
    assert data.lines_total is not None and data.lines_understood is not None
    assert 0 <= data.lines_understood <= data.lines_total
    for r in data.raw:
        assert isinstance(r.step, int) and 0 <= r.step < 10**15
        assert r.samples is None or isinstance(r.samples, int)


def test_a_60000_digit_number_is_read_in_linear_time() -> None:
    """Number runs are matched without backtracking (a 400-digit run took seconds per line)."""
    data = text.parse_text(f"step 1 | loss {'9' * 60_000}\nstep 2 | loss 2.5\n", Path("x.log"))
    assert [(r.step, r.loss) for r in data.raw] == [(1, math.inf), (2, 2.5)]


def test_duplicate_logging_is_reported_on_a_log_printed_twice() -> None:
    """The copies kept in ``raw`` reach the duplicate-logging detector (reported, then one per
    step analysed), as the issue asks: never silently merged."""
    from stabletrain.doctor import diagnose

    report = diagnose(_log("tf2_objdet_glog_6"))
    dup = next(f for f in report.findings if f.id == "duplicate-logging")
    assert dup.evidence["typical_copies"] == 2


def test_eval_progress_lines_alone_are_no_training_records() -> None:
    """mmengine's ``Epoch(val) [5][1550/5000] ... time: 0.0564`` lines time eval batches: a log
    of only those has no training record, and the doctor says so rather than judge it."""
    data = text.read(_log("mmengine_val_yoloworld_555"))
    assert data.raw == [] and data.lines_total == 5
    with pytest.raises(LogReadError, match="no training records"):
        read_run(_log("mmengine_val_yoloworld_555"))


@pytest.mark.parametrize(
    ("setting", "fact", "value"),
    [
        ("Namespace(arch='i3d', num_classes=2000, lr=0.1, batch_size=6)", "num_classes", 2000),
        ("  nb_classes = 10", "num_classes", 10),
        ("Number of classes: 100", "num_classes", 100),
        ("vocab_size: 50257, n_layer: 12", "vocab_size", 50257),
    ],
)
def test_a_class_count_printed_as_a_setting_is_a_fact(
    tmp_path: Path, setting: str, fact: str, value: int
) -> None:
    log = tmp_path / "train.log"
    lines = [setting] + [f"Epoch {e} train loss: {2.3 - e / 100} acc: 0.1" for e in range(1, 9)]
    log.write_text("\n".join(lines) + "\n")
    data = read_run(log)
    assert data.facts.get(fact) == value and data.facts.key(fact) in setting
    assert len(_train(data)) == 8


def test_a_class_count_beside_a_step_is_not_a_setting(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {s} loss 2.0 num_classes 7\n" for s in range(1, 6)))
    assert read_run(log).facts.get("num_classes") is None


def test_a_step_counter_that_restarts_with_each_epoch_is_a_position() -> None:
    """Lua Torch's ``Epoch 11 ; Iter 50/213`` (round 4 DEV, data2text#9): the counter restarts
    at each epoch. At first sight each epoch replaced the one before ("8 train records replaced
    ... resumed/rewound run"); now (epoch - first) * 213 + i, the first epoch as printed."""
    log = Path(__file__).parents[2] / "bench/doctor_corpus/data2text_9_ppl_nan/train.log"
    data = read_run(log)
    steps = [r.step for r in data.records if r.kind == "train"]
    assert steps == [50, 100, 150, 200, 263, 313, 363, 413, 476, 526, 576, 626]
    assert not any("replaced" in n for n in data.notes)
    assert any("restarts with each epoch" in n for n in data.notes)
    # ``Validation perplexity: nan`` names no step: it belongs to the last train step
    assert [r.step for r in data.records if r.kind == "eval"] == [200, 413, 626]


def test_a_counter_without_a_total_is_counted_by_its_largest_value() -> None:
    t = "".join(
        f"\titers: {i}, epoch: {e} | loss: {1.0 / (e * 10 + i / 100):.4f}\n"
        for e in (1, 2)
        for i in (100, 200, 300)
    )
    data = text.parse_text(t, Path("x.log"))
    assert [r.step for r in data.raw] == [100, 200, 300, 400, 500, 600]


def test_a_growing_step_with_an_epoch_is_kept_as_printed() -> None:
    t = "epoch: 1, step: 10, loss: 2.0\nepoch: 1, step: 20, loss: 1.9\nepoch: 2, step: 30, loss: 1.8\n"
    assert [r.step for r in text.parse_text(t, Path("x.log")).raw] == [10, 20, 30]


def test_nan_after_a_column_gap_is_a_value_not_prose() -> None:
    """insightface's ``Loss nan   LearningRate 0.001000   ...   Fp16 Grad Scale:  0`` (round 4
    DEV, #2262): at first sight ``nan`` followed by a letter was taken for prose and the log was
    refused; two spaces are a column gap. One space and a letter stay prose."""
    log = Path(__file__).parents[2] / "bench/doctor_corpus/insightface_2262_scale0_nan/train.log"
    data = read_run(log)
    train = [r for r in data.records if r.kind == "train"]
    assert sum(r.loss is not None and math.isnan(r.loss) for r in train) == 3
    assert [r.loss_scale for r in train if r.loss_scale is not None] == [0.0, 0.0, 0.0]
    assert data.roles["Fp16 Grad Scale"] == "loss_scale"
    prose = text.parse_text("step: 3 | number of nan iterations: 0 | loss: 1.5\n", Path("x"))
    assert [r.loss for r in prose.raw] == [1.5]
    assert all(math.isfinite(v) for r in prose.raw for v in r.metrics.values())


# Lines quoted from public GitHub issues (not in the corpus): readers are checked on real
# wordings beyond the labelled logs.
_CAFFE_4371 = """\
I0627 17:29:44.020539 13757 solver.cpp:228] Iteration 240, loss = 51.5251
I0627 17:29:44.020617 13757 solver.cpp:244]     Train net output #0: loss = 51.5251 (* 1 = 51.5251 loss)
I0627 17:29:44.190858 13757 sgd_solver.cpp:106] Iteration 240, lr = 0.001
I0627 17:29:49.245833 13757 solver.cpp:228] Iteration 260, loss = 33.3634
I0627 17:29:49.245911 13757 solver.cpp:244]     Train net output #0: loss = 33.3634 (* 1 = 33.3634 loss)
I0627 17:29:49.413265 13757 sgd_solver.cpp:106] Iteration 260, lr = 0.001
"""


def test_a_line_without_a_step_in_a_log_that_numbers_its_steps_is_at_the_step_in_effect() -> None:
    """Caffe (BVLC/caffe#4371): ``Train net output #0: loss = 51.5251`` under ``Iteration 240,
    loss = 51.5251``. It was numbered 1, 2, 3... among 240, 260: a rewind on every line and a
    run-restart warning on a healthy log. Now it is at step 240 and, repeating the values above in
    other words, folded (said in the notes)."""
    data = read_run_text(_CAFFE_4371)
    assert [(r.step, r.loss, r.lr) for r in data.records] == [
        (240, 51.5251, 0.001),
        (260, 33.3634, 0.001),
    ]
    assert any("repeating the record above" in n for n in data.notes)
    assert not any("replaced" in n for n in data.notes)


_MXNET_4900 = """\
INFO:root:Epoch[7] Batch [800]  Speed: 13335.28 samples/sec     Train-accuracy=0.981875
INFO:root:Epoch[7] Batch [900]  Speed: 13781.58 samples/sec     Train-accuracy=0.981563
INFO:root:Epoch[7] Resetting Data Iterator
INFO:root:Epoch[7] Time cost=4.615
INFO:root:Epoch[7] Validation-accuracy=0.970442
INFO:root:Epoch[8] Batch [100]  Speed: 14532.14 samples/sec     Train-accuracy=0.982969
INFO:root:Epoch[8] Batch [200]  Speed: 14470.93 samples/sec     Train-accuracy=0.983125
"""


def test_mxnet_speedometer_lines() -> None:
    """MXNet (apache/mxnet#4900): ``Epoch[7] Batch [800] ... Train-accuracy=0.98``. It was
    refused: ``Epoch[7]`` had no name, ``Batch`` was no step, ``Train-accuracy`` no accuracy."""
    data = read_run_text(_MXNET_4900)
    train = [(r.step, r.accuracy) for r in data.records if r.kind == "train"]
    assert train == [(800, 0.981875), (900, 0.981563), (1000, 0.982969), (1100, 0.983125)]
    assert [r.eval_accuracy for r in data.records if r.kind == "eval"] == [0.970442]


def test_a_framework_stopping_on_a_nan_loss_is_a_nan_loss_record() -> None:
    """TF Estimator (tensor2tensor#106) and detectron2 (#838) stop the run with a message
    instead of a metric line: the loss at that step was non-finite."""
    tf = read_run_text(
        "INFO:tensorflow:loss = 1.8717, step = 31601 (182.200 sec)\n"
        "ERROR:tensorflow:Model diverged with loss = NaN.\n"
    )
    assert [r.step for r in tf.records] == [31601, 31602] and math.isnan(tf.records[-1].loss)
    d2 = read_run_text(
        "[11/01 20:14:43 d2.utils.events]: eta: 5:43:31  iter: 499  total_loss: 1.733  lr: 0.005\n"
        "FloatingPointError: Loss became infinite or NaN at iteration=2137!\n"
    )
    assert [r.step for r in d2.records] == [499, 2137] and math.isnan(d2.records[-1].loss)
    assert not d2.events  # the framework stopped the run, not the guard


def read_run_text(content: str) -> RunData:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "train.log"
        f.write_text(content)
        return read_run(f)


def test_time_series_library_vali_and_test_losses() -> None:
    """The Time-Series-Library family (kwuking/TimeMixer#88): ``iters: 100, epoch: 19 | loss:``
    restarting each epoch, and ``Train Loss: .. Vali Loss: .. Test Loss: ..`` per epoch. ``Vali``
    is a validation prefix and the validation loss, not the test one, is the eval loss."""
    data = read_run_text(
        "\titers: 400, epoch: 18 | loss: 0.1425354\n"
        "Epoch: 18, Steps: 569 | Train Loss: 0.1296439 Vali Loss: 0.1200742 Test Loss: 0.1446345\n"
        "\titers: 100, epoch: 19 | loss: 0.1214533\n"
        "\titers: 200, epoch: 19 | loss: 0.1245885\n"
    )
    assert data.roles["Vali Loss"] == "eval_loss" and data.roles["Test Loss"] == "metric"
    train = [r.step for r in data.records if r.kind == "train"]
    assert train == sorted(train) and train[-2:] == [669, 769]  # 569 + 100, 569 + 200


def test_a_vector_of_per_device_losses_is_its_mean_or_its_nan() -> None:
    """PaddlePaddle fluid prints the fetched loss as a numpy vector, one value per device, and
    wraps it (PaddlePaddle/Paddle#11659). It was not read: ``batch 500`` with NaN on six of eight
    devices gave no record. A vector after a step context is its mean, NaN when an element is;
    a vector alone on a line stays a per-epoch series (MatConvNet's ``objective: [...]``)."""
    data = read_run_text(
        "Pass 0, batch 0, loss [9.210789  9.209968  9.2115755 9.210512  9.211608  9.2112\n"
        " 9.21356  ]\n"
        "Pass 0, batch 200, loss [9.291733 9.210005 8.988502 8.988871 9.213335 7.536703 9.25549 ]\n"
        "Pass 0, batch 500, loss [     nan 9.211133      nan      nan      nan      nan 9.210888]\n"
    )
    losses = {r.step: r.loss for r in data.records}
    assert set(losses) == {0, 200, 500} and math.isnan(losses[500])
    assert losses[200] == pytest.approx(8.926384857142857)
    assert losses[0] == pytest.approx(9.210942083)  # the mean of the 6 on the line (wrapped: 7th)


def test_a_name_printed_twice_takes_the_split_of_the_name_before_it() -> None:
    """``Epoch [4/20] | Train Loss: 0.2408 Acc: 0.9108 | Test Loss: 0.2396 Acc: 0.9083`` (a
    Fashion-MNIST script's log committed in Nuyoahwjl/HUST-CS): the first ``Acc`` is the train
    accuracy, the second the test one. Both were ``Acc``: one was kept as a bare metric."""
    data = read_run_text(
        "2025-05-09 19:35:08,127 - Epoch [4/20] | Train Loss: 0.2408 Acc: 0.9108 | "
        "Test Loss: 0.2396 Acc: 0.9083\n"
        "2025-05-09 19:35:31,898 - Epoch [5/20] | Train Loss: 0.2190 Acc: 0.9196 | "
        "Test Loss: 0.2311 Acc: 0.9161\n"
    )
    assert data.roles["Train Acc"] == "accuracy" and data.roles["Test Acc"] == "eval_accuracy"
    train = [r for r in data.records if r.kind == "train"]
    evals = [r for r in data.records if r.kind == "eval"]
    assert [r.accuracy for r in train] == [0.9108, 0.9196]
    assert [(r.eval_loss, r.eval_accuracy) for r in evals] == [(0.2396, 0.9083), (0.2311, 0.9161)]


def test_task_prefixed_eval_keys_are_eval_values() -> None:
    """HF Trainer with named eval sets prints ``mrpc_en_eval_loss`` (huggingface/transformers
    #11323): an eval loss, not an unknown train metric."""
    data = read_run_text(
        "{'loss': 6.1045, 'learning_rate': 6e-07, 'epoch': 0.02}\n"
        "{'mrpc_en_eval_loss': 6.924696445465088, 'mrpc_en_eval_f1': 0.0, "
        "'mrpc_en_eval_accuracy': 0.0, 'mrpc_en_eval_runtime': 1.9287, 'epoch': 0.22}\n"
    )
    evals = [r for r in data.records if r.kind == "eval"]
    assert [(r.eval_loss, r.eval_accuracy) for r in evals] == [(6.924696445465088, 0.0)]
    assert data.roles["mrpc_en_eval_loss"] == "eval_loss"
