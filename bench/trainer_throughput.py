"""Reference-trainer throughput on this machine: steps/s and samples-or-tokens/s per model.

Runs a few hundred optimizer steps of each shipped stable config through the real loop (guard,
run log, no TensorBoard, no checkpoints) and prints one line per model. For the GPT it also
prints the corpus's unigram entropy next to the validation loss reached, the bar a char model
must clear to have learned anything beyond letter frequencies.

    .venv/bin/python bench/trainer_throughput.py [--steps 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from stabletrain.train.config import load_config
from stabletrain.train.data import load_dataset, unigram_entropy
from stabletrain.train.loop import train
from stabletrain.train.summary import STEPS_FILE, read_records

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def bench(config: str, steps: int) -> None:
    cfg = load_config(
        CONFIGS / config,
        [f"train.max_steps={steps}", "train.epochs=1000", "run.tensorboard=false",
         "run.checkpoint_every=1000000000"],
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        st, p = train(cfg, Path(tmp), echo=lambda _msg: None)
        wall = time.perf_counter() - t0
        recs = read_records(Path(tmp) / STEPS_FILE)
    loop_time = sum(r.step_time or 0.0 for r in recs)
    unit = "tokens" if p.data.task == "lm" else "samples"
    count = sum((r.tokens if unit == "tokens" else r.samples) or 0 for r in recs)
    line = (
        f"{cfg.model.name:4s} {config:16s} {len(recs)} steps: {len(recs) / loop_time:7.1f} steps/s  "
        f"{count / loop_time:9.0f} {unit}/s  (wall {wall:.1f} s incl. evals)"
    )
    if p.data.task == "lm":
        data = load_dataset(cfg.data, cfg.run.seed)
        h = unigram_entropy(data.y_train, data.num_classes)
        line += f"  val loss {st.best_val:.3f} vs unigram entropy {h:.3f} nats"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps per model")
    bench("digits-cnn.yaml", args.steps)
    bench("tiny-gpt.yaml", args.steps)


if __name__ == "__main__":
    main()
