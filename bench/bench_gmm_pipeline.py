"""Wall-clock time of the GMM pipeline (run.sh stages 8-11: mono, tri1, tri2, tri3) and what it produced.

Usage: python bench/bench_gmm_pipeline.py [--nj 2] [--run [--stage 8]]
       (run from the repository root, after stages 1-7)

With --run, runs `run.sh --stage S --stop-stage 11 --force --nj N` (S = --stage, default 8; this rewrites
exp/{mono,tri1,tri2,tri3}*, data/*_fmllr, and invalidates the markers of later stages) from a copy read into memory
(so that edits of run.sh meanwhile cannot disturb it), and times each stage from its start to the next one's; the
times of stages before S are kept from the previous run. Without --run, reads the stage times of the last run from
exp/bench_gmm_pipeline.log. Then prints, per system,
its test and dev WER (decode_*/best_wer) and its decoding real-time factor (decode_*/log/rtf), the training
passes' log-likelihood per frame, and the numbers of pdfs and Gaussians.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SYSTEMS = ("mono", "tri1", "tri2", "tri3")
LOG = Path("exp/bench_gmm_pipeline.log")


def run_stages(nj: int, first: int) -> dict[str, float]:
    """Run stages first..11, return seconds per stage (banner to banner), earlier stages' from the last run."""
    earlier = list(read_times().items())[:first - 8] if first > 8 and LOG.is_file() else []
    if len(earlier) != first - 8:
        sys.exit(f"{LOG}: no times of stages 8..{first - 1} to keep; run from --stage 8")
    LOG.parent.mkdir(parents=True, exist_ok=True)
    times, current, start = dict(earlier), None, time.time()
    script = Path("run.sh").read_text()
    with open(LOG, "w") as log:
        proc = subprocess.Popen(["bash", "-c", script, "run.sh", "--stage", str(first), "--stop-stage", "11",
                                 "--force", "--nj", str(nj)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        for line in proc.stdout:
            log.write(line)
            log.flush()
            match = re.match(r"== stage (\d+): (\S+) \(", line)
            if match:
                now = time.time()
                if current:
                    times[current] = now - start
                current, start = match.group(2), now
        proc.wait()
        if current:
            times[current] = time.time() - start
        log.write("".join(f"#time {name} {sec:.1f}\n" for name, sec in times.items()))
    if proc.returncode != 0:
        sys.exit(f"run.sh failed (exit {proc.returncode}); see {LOG}")
    return times


def read_times() -> dict[str, float]:
    if not LOG.is_file():
        sys.exit(f"{LOG}: no timed run yet (use --run)")
    return {f[1]: float(f[2]) for f in (line.split() for line in LOG.read_text().splitlines()
                                        if line.startswith("#time "))}


def wer(path: Path) -> str:
    return path.read_text().split()[1] if path.is_file() else "-"


def rtf(path: Path) -> str:
    match = re.search(r"real-time factor (\S+)", path.read_text()) if path.is_file() else None
    return match.group(1) if match else "-"


def model_sizes(system: str) -> str:
    model = Path(f"exp/{system}/final.mdl")
    if not model.is_file():
        return "-"
    out = subprocess.run(["esgd-gmm-train", "info", str(model)], capture_output=True, text=True).stdout
    info = dict(line.split() for line in out.splitlines() if line.strip())
    return f"{info.get('number-of-pdfs', '?')} pdfs, {info.get('number-of-gaussians', '?')} Gaussians"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--run", action="store_true", help="run stages 8-11 now (else report the last run)")
    parser.add_argument("--stage", type=int, default=8, choices=range(8, 12), help="first stage to run")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path('.venv/bin').resolve()}:{os.environ['PATH']}"
    times = run_stages(args.nj, args.stage) if args.run else read_times()
    total = sum(times.values())
    print(f"GMM pipeline (stages 8-11, --nj {args.nj}): {total / 60:.1f} min in all; "
          + ", ".join(f"{name} {sec / 60:.1f} min" for name, sec in times.items()))
    print(f"{'system':8s} {'test WER':>9s} {'dev WER':>8s} {'test RTF':>9s} {'dev RTF':>8s}  model")
    for system in SYSTEMS:
        d = Path(f"exp/{system}")
        print(f"{system:8s} {wer(d / 'decode_test/best_wer'):>9s} {wer(d / 'decode_dev/best_wer'):>8s} "
              f"{rtf(d / 'decode_test/log/rtf'):>9s} {rtf(d / 'decode_dev/log/rtf'):>8s}  {model_sizes(system)}")


if __name__ == "__main__":
    main()
