"""NVIDIA apex amp's overflow lines (logs/readers/dialects.py, the ``apex`` event) and how the
doctor weighs them (doctor.scale_findings): a scale halving on every step to 1e-205 is a collapse;
a scale that backs off a few times and stays high is the dynamic scaler at work, a note."""

from __future__ import annotations

from pathlib import Path

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run

# apex#318 (round-3 held-out, development data from session 4): the scale halving every step
APEX_318 = """\
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 8.165126103939127e-202
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 4.082563051969564e-202
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 2.041281525984782e-202
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 1.020640762992391e-202
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 5.103203814961955e-203
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 2.5516019074809773e-203
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 1.2758009537404886e-203
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 6.379004768702443e-204
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 3.1895023843512216e-204
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 1.5947511921756108e-204
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 7.973755960878054e-205
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 3.986877980439027e-205
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 1.9934389902195135e-205
Gradient overflow. Skipping step, loss scaler 0 reducing loss scale to 9.967194951097568e-206
"""

# an HF Trainer fine-tune under apex O1 (a public repo's README, wisesight sentiment): three
# back-offs from 65536 to 8192 between steps 893 and 988, loss flat and healthy
HF_APEX_HEALTHY = """\
    58%|█████▊    | 780/1352 [05:15<01:09,  8.21it/s]{'loss': 0.752880859375, 'learning_rate': 1.4111842105263159e-05, 'epoch': 0.5769230769230769}
    58%|█████▊    | 790/1352 [05:17<01:11,  7.90it/s]{'loss': 0.763067626953125, 'learning_rate': 1.3865131578947369e-05, 'epoch': 0.584319526627219}
                                                    {'loss': 0.651007080078125, 'learning_rate': 1.361842105263158e-05, 'epoch': 0.591715976331361}
    60%|█████▉    | 810/1352 [05:21<01:12,  7.45it/s]{'loss': 0.72872314453125, 'learning_rate': 1.337171052631579e-05, 'epoch': 0.599112426035503}
    61%|██████    | 820/1352 [05:22<01:04,  8.22it/s]{'loss': 0.790142822265625, 'learning_rate': 1.3125e-05, 'epoch': 0.606508875739645}
    61%|██████▏   | 830/1352 [05:24<01:02,  8.31it/s]{'loss': 0.646343994140625, 'learning_rate': 1.287828947368421e-05, 'epoch': 0.613905325443787}
    62%|██████▏   | 840/1352 [05:25<01:13,  6.97it/s]{'loss': 0.830230712890625, 'learning_rate': 1.263157894736842e-05, 'epoch': 0.621301775147929}
    63%|██████▎   | 850/1352 [05:26<01:11,  7.04it/s]{'loss': 0.728875732421875, 'learning_rate': 1.2384868421052632e-05, 'epoch': 0.628698224852071}
    64%|██████▎   | 860/1352 [05:28<01:05,  7.49it/s]{'loss': 0.725, 'learning_rate': 1.2138157894736842e-05, 'epoch': 0.636094674556213}
    64%|██████▍   | 870/1352 [05:29<01:08,  7.08it/s]{'loss': 0.676788330078125, 'learning_rate': 1.1891447368421053e-05, 'epoch': 0.643491124260355}
    65%|██████▌   | 880/1352 [05:30<00:58,  8.06it/s]{'loss': 0.735028076171875, 'learning_rate': 1.1644736842105263e-05, 'epoch': 0.650887573964497}
    66%|██████▌   | 890/1352 [05:32<01:07,  6.89it/s]{'loss': 0.7079345703125, 'learning_rate': 1.1398026315789473e-05, 'epoch': 0.658284023668639}
    66%|██████▌   | 893/1352 [05:32<00:57,  7.92it/s]Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 32768.0
    67%|██████▋   | 900/1352 [05:36<07:34,  1.01s/it]{'loss': 0.784625244140625, 'learning_rate': 1.1151315789473684e-05, 'epoch': 0.665680473372781}
    67%|██████▋   | 910/1352 [05:38<01:13,  6.02it/s]{'loss': 0.72747802734375, 'learning_rate': 1.0904605263157894e-05, 'epoch': 0.6730769230769231}
    68%|██████▊   | 920/1352 [05:39<01:09,  6.20it/s]{'loss': 0.768280029296875, 'learning_rate': 1.0657894736842106e-05, 'epoch': 0.6804733727810651}
    69%|██████▉   | 930/1352 [05:40<01:06,  6.39it/s]{'loss': 0.761163330078125, 'learning_rate': 1.0411184210526316e-05, 'epoch': 0.6878698224852071}
    70%|██████▉   | 940/1352 [05:42<00:54,  7.52it/s]{'loss': 0.72337646484375, 'learning_rate': 1.0164473684210528e-05, 'epoch': 0.6952662721893491}
                                                    {'loss': 0.77833251953125, 'learning_rate': 9.917763157894738e-06, 'epoch': 0.7026627218934911}
    70%|███████   | 952/1352 [05:44<00:53,  7.43it/s]Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 16384.0
    71%|███████   | 960/1352 [05:45<00:56,  6.94it/s]{'loss': 0.593701171875, 'learning_rate': 9.671052631578948e-06, 'epoch': 0.7100591715976331}
    72%|███████▏  | 970/1352 [05:46<00:46,  8.14it/s]{'loss': 0.715960693359375, 'learning_rate': 9.424342105263158e-06, 'epoch': 0.7174556213017751}
    72%|███████▏  | 980/1352 [05:47<00:53,  7.00it/s]{'loss': 0.63238525390625, 'learning_rate': 9.177631578947368e-06, 'epoch': 0.7248520710059172}
    73%|███████▎  | 988/1352 [05:48<00:43,  8.31it/s]Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 8192.0
    73%|███████▎  | 990/1352 [05:49<00:41,  8.74it/s]{'loss': 0.8906982421875, 'learning_rate': 8.93092105263158e-06, 'epoch': 0.7322485207100592}
    74%|███████▍  | 1000/1352 [06:07<30:06,  5.13s/it]{'loss': 0.68482666015625, 'learning_rate': 8.68421052631579e-06, 'epoch': 0.7396449704142012}
                                                    {'loss': 0.641973876953125, 'learning_rate': 8.4375e-06, 'epoch': 0.7470414201183432}
    75%|███████▌  | 1020/1352 [06:09<00:53,  6.24it/s]{'loss': 0.7864013671875, 'learning_rate': 8.19078947368421e-06, 'epoch': 0.7544378698224852}
    76%|███████▌  | 1030/1352 [06:11<00:43,  7.46it/s]{'loss': 0.738299560546875, 'learning_rate': 7.94407894736842e-06, 'epoch': 0.7618343195266272}
    77%|███████▋  | 1040/1352 [06:12<00:38,  8.05it/s]{'loss': 0.84078369140625, 'learning_rate': 7.697368421052632e-06, 'epoch': 0.7692307692307693}
    78%|███████▊  | 1050/1352 [06:13<00:42,  7.17it/s]{'loss': 0.752410888671875, 'learning_rate': 7.450657894736842e-06, 'epoch': 0.7766272189349113}
    78%|███████▊  | 1060/1352 [06:15<00:37,  7.70it/s]{'loss': 0.72764892578125, 'learning_rate': 7.203947368421053e-06, 'epoch': 0.7840236686390533}
"""

# apex's start-up search (a public repo's README): 65536 halved to 512 in the first steps
APEX_START = """\
loss_scale             : dynamic
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 32768.0
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 16384.0
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 8192.0
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 4096.0
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 2048.0
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 1024.0
306 ms per sample 3.264227441837997 samples per second
325 ms per sample 3.0742666242831227 samples per second
Gradient overflow.  Skipping step, loss scaler 0 reducing loss scale to 512.0
327 ms per sample 3.051127662860935 samples per second
327 ms per sample 3.05291581960959 samples per second
"""


def _write(tmp_path: Path, text: str) -> Path:
    log = tmp_path / "console.txt"
    log.write_text(text)
    return log


def test_real_apex_overflow_lines_are_skipped_steps(tmp_path: Path) -> None:
    run = read_run(_write(tmp_path, APEX_318))
    assert run.dialect == "apex" and len(run.records) == 14
    assert all(r.skipped for r in run.records)
    assert run.records[-1].loss_scale == 9.967194951097568e-206
    [f] = [f for f in diagnose(_write(tmp_path, APEX_318)).findings if f.severity == "error"]
    assert f.id == "loss-scale-collapse"


def test_near_miss_the_scaler_probing_is_a_note(tmp_path: Path) -> None:
    report = diagnose(_write(tmp_path, HF_APEX_HEALTHY))
    assert [(f.id, f.severity) for f in report.findings] == [("fp16-overflow", "info")]
    assert report.findings[0].fixes == []
    start = diagnose(_write(tmp_path, APEX_START))
    assert [f for f in start.findings if f.severity != "info"] == []
