"""The generation loop shared by every population algorithm: checkpoint each generation, resume, log, fine-tune."""
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from esgd_asr.atomic import atomic_torch_save
from esgd_asr.population.checkpoint import CHECKPOINT_NAME, load_checkpoint, retract_outputs, save_checkpoint
from esgd_asr.population.history import GenerationLog

FINAL_MODEL_NAME = "final.pt"


def run_algorithm(algorithm, out_dir: str | Path, resume: bool = False, stop_after: int | None = None,
                  progress: bool = True, tensorboard: bool = True, plot: bool = True,
                  fingerprint: dict | None = None, save_model: Callable[[object, list, Path], object] | None = None
                  ) -> list[dict]:
    """Run the remaining generations of `algorithm`, then its `finish()` (fine-tune), saving an atomic
    checkpoint after each; out_dir/final.pt gets the best model (`save_model(algorithm, history, path)`, default:
    the bare state dict of algorithm.best_state()). With `resume` the run continues from out_dir/checkpoint.pt
    exactly as if never stopped; `fingerprint` (the run's settings) is kept in the checkpoint and a resume with other settings is refused.
    `stop_after` ends after that many generations in total (to split a run). Returns the history records.
    A distributed run's ranks all call it: only the main process (algorithm.main_process) writes files."""
    out_dir = Path(out_dir)
    main = getattr(algorithm, "main_process", True)
    history = []
    if resume and (out_dir / CHECKPOINT_NAME).exists():
        history = load_checkpoint(out_dir, algorithm, fingerprint)
    log = None
    if main:
        retract_outputs(out_dir, resume)
        log = GenerationLog(out_dir, tensorboard=tensorboard, plot=plot, first_generation=algorithm.generation)
    try:
        last = algorithm.total_generations if stop_after is None else min(stop_after, algorithm.total_generations)
        bar = tqdm(total=algorithm.total_generations, initial=algorithm.generation, disable=not (progress and main),
                   desc=algorithm.name, unit="gen")
        while algorithm.generation < last:
            record = algorithm.step()
            history.append(record)
            save_checkpoint(out_dir, algorithm, history, fingerprint, write=main)
            if log is not None:
                log.write(history)
            bar.update(1)
            bar.set_postfix(best=f"{record['best']:.4f}", elite=f"{record['elite_mean']:.4f}")
        bar.close()
        finishing = algorithm.generation == algorithm.total_generations and not algorithm.finished
        if finishing:
            history.append({"finish": algorithm.name, **algorithm.finish()})
            save_checkpoint(out_dir, algorithm, history, fingerprint, write=main)
            if log is not None:
                log.write(history)
        if main and (finishing or (algorithm.finished and not (out_dir / FINAL_MODEL_NAME).exists())):
            if save_model is None:
                atomic_torch_save(algorithm.best_state(), out_dir / FINAL_MODEL_NAME)
            else:
                save_model(algorithm, history, out_dir / FINAL_MODEL_NAME)
    finally:
        if log is not None:
            log.close()
    return history
