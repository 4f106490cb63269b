"""Lightning's ``on_step``/``on_epoch`` suffixes in a ``metrics.csv`` (logs/readers/fields.py):
``train_loss_epoch`` alone is the loss (its epoch means are the series); beside a
``train_loss_step`` twin the per-step values fill the field and the epoch means stay metrics."""

from __future__ import annotations

from pathlib import Path

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run

# an MNIST classifier's metrics.csv (round-3 held-out, development data from session 4): only
# epoch means were logged; refused before ("no column is a loss or metric")
AIOPS_MNIST = """\
acc_epoch,epoch,step,train_loss_epoch
0.15625,0,3,2.282355308532715
0.40625,1,7,1.6110919713974
0.53125,2,11,1.4025089740753174
"""

# a small LM's metrics.csv (the corpus's lightning_slm_wikitext, a DEV log): both twins
SLM = """\
epoch,epoch_time,step,train_epoch_perplexity,train_loss_epoch,train_loss_step,train_perplexity_epoch,train_perplexity_step,val_epoch_perplexity,val_loss,val_perplexity
0,,49,,,7.628580570220947,,2056.12939453125,,,
0,,99,,,7.528001308441162,,1859.385498046875,,,
0,,149,,,7.364057540893555,,1578.227294921875,,,
0,2517.10107421875,14073,118.74422454833984,4.776971817016602,,169.75250244140625,,,,
"""


def test_real_epoch_means_alone_are_the_series(tmp_path: Path) -> None:
    log = tmp_path / "metrics.csv"
    log.write_text(AIOPS_MNIST)
    run = read_run(log)
    assert [r.loss for r in run.records] == [2.282355308532715, 1.6110919713974, 1.4025089740753174]
    assert [r.accuracy for r in run.records] == [0.15625, 0.40625, 0.53125]
    assert [f for f in diagnose(log).findings if f.severity != "info"] == []  # a healthy start


def test_real_step_twin_fills_the_field(tmp_path: Path) -> None:
    log = tmp_path / "metrics.csv"
    log.write_text(SLM)
    run = read_run(log)
    losses = [r.loss for r in run.records if r.loss is not None]
    assert losses == [7.628580570220947, 7.528001308441162, 7.364057540893555]
    [last] = [r for r in run.records if r.step == 14073]
    assert last.loss is None and last.metrics["train_loss_epoch"] == 4.776971817016602
