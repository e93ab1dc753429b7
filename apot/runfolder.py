"""A training run's folder and lines: checkpoint.pth.tar, model_best.pth.tar, log.csv and
args.json, and what each epoch and the end of a run print."""
import csv
import os
import time

from apot.checkpoint import atomic_save, atomic_write, write_json
from apot.errors import UserError


def prepare_save_dir(save_dir, resume):
    """Create the run folder; refuse to start a new run over an existing one."""
    os.makedirs(save_dir, exist_ok=True)
    last = os.path.join(save_dir, "checkpoint.pth.tar")
    if os.path.exists(last) and not resume:
        raise UserError(f"{save_dir} already holds a run: continue it with --resume {last} "
                        "or choose another --save-dir")


def save_epoch(state, save_dir, is_best):
    """checkpoint.pth.tar every epoch, model_best.pth.tar on a new best, log.csv rewritten from
    the checkpoint's history so that it always matches the checkpoint a resumed run starts from."""
    atomic_save(state, os.path.join(save_dir, "checkpoint.pth.tar"))
    if is_best:
        atomic_save(state, os.path.join(save_dir, "model_best.pth.tar"))
    write_log(os.path.join(save_dir, "log.csv"), state["history"])


def epoch_row(epoch, lr, best, started, **metrics):
    """One log.csv row: epoch, lr, the metrics (losses to 5 places, accuracies to 3), the best
    accuracy so far and the epoch's wall time since `started` (time.time())."""
    rounded = {k: round(v, 5 if "loss" in k else 3) for k, v in metrics.items()}
    return dict(epoch=epoch, lr=lr, **rounded, best_acc=round(best, 3),
                seconds=round(time.time() - started, 1))


def write_log(path, rows):
    def write(f):
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, write, text=True)


def write_args(path, args):
    write_json(path, vars(args), sort_keys=True)


def report_final(history, best_prec, say):
    """The last lines of a training run: final-epoch and best test top-1."""
    if history:
        say(f"* Prec@1 {history[-1]['test_acc']:.2f}")
    say(f"* Best@1 {best_prec:.2f}")


def epoch_line(epoch, lr, metrics, best, seconds):
    """The line each epoch prints (metrics unrounded, as the epoch computed them)."""
    m = metrics
    top5 = f" top-5 {m['test_top5']:.2f}" if "test_top5" in m else ""
    return (f"epoch {epoch}: lr {lr:.5g} train loss {m['train_loss']:.4f} acc "
            f"{m['train_acc']:.2f} | test loss {m['test_loss']:.4f} acc {m['test_acc']:.2f}{top5} "
            f"| best {best:.2f} | {seconds}s")


def stage_name(bit):
    """A chain stage's name in tables, figures and benchmark reports."""
    return "FP32" if bit == 32 else f"{bit}-bit"
