"""Print the recipe's results: corpus summary, LM perplexity, each system's best WER per decoded set, the
hybrid systems in the shape of the ESGD papers' Table 1 (validation CE, test WER), and each stage's wall time.

Usage: esgd-show-results [<data-root>] [<exp-dir>]
"""
import json
from pathlib import Path

import torch

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.corpus_summary import print_summary
from esgd_asr.data.kaldi_dir import DataDir
from esgd_asr.errors import cli_main


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", type=Path, nargs="?", default=Path("data"))
    parser.add_argument("exp_dir", type=Path, nargs="?", default=Path("exp"))
    args = parser.parse_args(argv)
    print("\n== Results ==")
    splits = {s: DataDir.read(args.data_root / s) for s in ("train",) + EVAL_SETS
              if (args.data_root / s / "utt2spk").is_file()}
    if splits:
        print_summary(splits)
    ppl_file = args.data_root / "local" / "lm" / "ppl_dev.txt"
    if ppl_file.is_file():
        ppl = json.loads(ppl_file.read_text())
        print(f"\nLM (data/local/lm/lm.arpa): dev perplexity {ppl['ppl']:.1f} "
              f"({ppl['num_words']} words, {ppl['num_oov']} OOV words)")
    for eer in sorted(args.exp_dir.glob("ivectors_*/eer")):
        print(f"i-vectors ({eer.parent}): speaker EER {float(eer.read_text()):.2f}% (chance 50%)")
    print_wer_table(args.exp_dir)
    print_table1(args.exp_dir)
    print_stage_times(args.exp_dir / ".stages")


# the decoded sets, as columns; heldout: the test sentences read by voices never used in train/dev/test
EVAL_SETS = ("dev", "test", "heldout")
RECIPE_SYSTEMS = ("mono", "tri1", "tri2", "tri3", "dnn", "blstm")  # rows in the recipe's order, then the others


def print_wer_table(exp_dir: Path) -> None:
    """Every system's best WER on each decoded set (exp/<system>/decode_<set>/best_wer), one row a system;
    sets that are not the corpus' own columns (e.g. decode_test_ood of a user) follow as extra columns."""
    wers: dict[str, dict[str, str]] = {}
    for best in sorted(exp_dir.glob("*/decode_*/best_wer")):
        wers.setdefault(best.parent.parent.name, {})[best.parent.name[len("decode_"):]] = best.read_text().split()[1]
    if not wers:
        print("\n(no decoded system yet)")
        return
    order = [x for x in RECIPE_SYSTEMS if x in wers] + sorted(set(wers) - set(RECIPE_SYSTEMS))
    decoded = {x for sets in wers.values() for x in sets}
    columns = [x for x in EVAL_SETS if x in decoded] + sorted(decoded - set(EVAL_SETS))
    print(f"\n{'system':<24}" + "".join(f"{x + ' WER%':>14}" for x in columns))
    for system in order:
        print(f"{system:<24}" + "".join(f"{wers[system].get(x, '-'):>14}" for x in columns))


# Table 1 rows per network (dnn, blstm): exp dir name pattern and the papers' name of the system
TABLE1_SYSTEMS = [("{kind}", "single SGD (converged; the anchor)"),
                  ("{kind}_budget", "single SGD (equal budget)"),
                  ("esgd_{kind}_population", "population baseline"),
                  ("esgd_{kind}_no_evolution", "ESGD without evolution"), ("esgd_{kind}_esgd", "ESGD"),
                  ("{kind}_ft", "control: anchor + new-bob"),
                  ("esgd_{kind}_anchored", "ESGD with anchor (SGD baseline)"),
                  ("esgd_{kind}_anchored_esgd", "ESGD with anchor (ESGD baseline)"),
                  ("esgd_{kind}_iterated", "ESGD with iterated anchors")]


def best_wer(decode_dir: Path) -> str:
    path = decode_dir / "best_wer"
    return path.read_text().split()[1] if path.is_file() else "-"


def value_range(values: list[float], digits: int) -> str:
    """[low, high] of the top-quarter values, "-" without any."""
    return f"[{min(values):.{digits}f}, {max(values):.{digits}f}]" if values else "-"


def table1_row(system: Path) -> list[str]:
    """Dev CE (whole set; the fitness CE beside it when selection used a subset), its top-quarter range, test WER
    and its range (decode_test, and decode_test_rank<r> of each top/rank<r>.pt), held-out WER, SGD frames per
    member, total SGD member-frames, wall time."""
    info = torch.load(system / "final.pt", map_location="cpu", weights_only=True).get("info") or {}
    ce = f"{info['valid_ce']:.3f}" if "valid_ce" in info else "-"
    if info.get("fitness_frames"):
        ce += f" ({info['fitness_ce']:.3f})"
    decodes = [system / "decode_test"] + [system / f"decode_test_{top.stem}" for top in system.glob("top/rank*.pt")]
    wers = [float(w) for w in map(best_wer, decodes) if w != "-"]
    member, total = info.get("member_frames"), info.get("sgd_frames", info.get("member_frames"))
    wall = training_seconds(system)
    return [ce, value_range(info.get("top_valid_ce", []), 3), best_wer(system / "decode_test"),
            value_range(wers, 2), best_wer(system / "decode_heldout"), f"{member / 1e6:.2f}M" if member else "-", f"{total / 1e6:.2f}M" if total else "-",
            f"{wall / 60:.1f}" if wall else "-"]


def training_seconds(system: Path) -> float | None:
    """A run's training wall time: the seconds of every record of its history (history.jsonl of a population run,
    history.tsv of a single model); None without a history."""
    if (system / "history.jsonl").is_file():
        records = [json.loads(line) for line in (system / "history.jsonl").read_text().splitlines() if line]
        return sum(r.get("seconds", 0) for r in records)
    if (system / "history.tsv").is_file():
        header, *rows = [line.split("\t") for line in (system / "history.tsv").read_text().splitlines()]
        if "seconds" in header:
            return sum(float(row[header.index("seconds")]) for row in rows)
    return None


def print_table1(exp_dir: Path) -> None:
    """The ESGD papers' Table 1 per network: the best member's dev CE (whole dev set) and test WER, the range over
    the top quarter of the population (the papers: the top 15 of mu = 100), the best member's held-out WER, and the budget of every row."""
    header = ["dev CE", "top-1/4 CE", "test WER%", "top-1/4 WER", "heldout WER%", "frames/mbr", "total", "wall min"]
    widths = [15, 17, 10, 18, 13, 11, 9, 9]
    lines = []
    for kind in ("dnn", "blstm"):
        for pattern, label in TABLE1_SYSTEMS:
            system = exp_dir / pattern.format(kind=kind)
            if (system / "final.pt").is_file():
                cells = table1_row(system)
                lines.append(f"{kind:<6}{label:<35}{system.name:<27}"
                             + "".join(f"{cell:>{width}}" for cell, width in zip(cells, widths)))
    if lines:
        print(f"\nTable 1 (ESGD papers' shape)\n{'model':<6}{'system':<35}{'exp dir':<27}"
              + "".join(f"{name:>{width}}" for name, width in zip(header, widths)))
        print("\n".join(lines))
        print("dev CE: on the whole dev set (in parentheses: on the fitness subset that selected, when one was set)\n"
              "top-1/4: range over the top quarter of mu; frames/mbr: SGD frames each member saw (anchored rows and\n"
              "the control: on top of their anchor's); total: SGD member-frames over the population (x mu)")



def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def print_stage_times(stages_dir: Path) -> None:
    """Each stage's wall time and when it finished, from run.sh's markers (exp/.stages/N.NAME: key=value lines); a
    stage that is running or was stopped (only N.NAME.running) is listed as such."""
    rows = {}
    for marker in stages_dir.glob("*.*"):
        number, _, name = marker.name.partition(".")
        if not number.isdigit() or name.endswith(".tmp"):
            continue
        if name.endswith(".running"):
            rows.setdefault(int(number), (name[:-len(".running")], None, "running or stopped"))
            continue
        values = dict(line.split("=", 1) for line in marker.read_text().splitlines() if "=" in line)
        if "wall_seconds" in values:
            rows[int(number)] = (name, float(values["wall_seconds"]), values["finished"][:19])
    if not rows:
        return
    print(f"\nStage wall times (exp/.stages)\n{'stage':<18}{'wall time':>12}  finished")
    for number, (name, seconds, finished) in sorted(rows.items()):
        print(f"{number:>2} {name:<15}{format_seconds(seconds) if seconds is not None else '-':>12}  {finished}")
    total = sum(seconds for _, seconds, _ in rows.values() if seconds is not None)
    print(f"{'total':<18}{format_seconds(total):>12}")


if __name__ == "__main__":
    main()
