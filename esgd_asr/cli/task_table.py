"""Print (and write) the results table of a secondary recipe: one row per trained system, in the shape of the ASR
recipe's Table 1 (metric of the best model, top-quarter range, budget columns).

Usage: esgd-task-table [--out FILE] LABEL=EXP_DIR [LABEL=EXP_DIR ...]

Vision rows give the validation CE and error rate and the test error rate; LM rows the validation CE and
perplexity and the test perplexity. Budget: samples (tokens for an LM) of training behind each member
(samples/mbr), over all members (total), and wall minutes. A row whose final.pt is missing is left out.
"""
from pathlib import Path

from esgd_asr.atomic import atomic_write_text
from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.cli.train_task import load_task_model
from esgd_asr.errors import EsgdError, cli_main

COLUMNS = {"vision": [("valid CE", "valid_ce", 3), ("valid err%", "valid_error", 2), ("test err%", "test_error", 2)],
           "lm": [("valid CE", "valid_ce", 3), ("valid ppl", "valid_ppl", 2), ("test ppl", "test_ppl", 2)]}
NOTE = ("top-1/4: range of the validation CE over the top quarter of mu (ESGD family); samples/mbr: training\n"
        "samples (LM: tokens) behind one member (anchored / inserted rows: on top of their anchor's); total: over\n"
        "all members (Population Descent: mu x local steps; OpenAI-ES: forward passes of its pseudo-offspring,\n"
        "its label's pseudo-offspring an update x updates x samples an update).")


def count(value: int) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def es_budget(info: dict) -> str:
    """An OpenAI-ES row's budget for its label: pseudo-offspring an update x updates x samples an update."""
    budget = info.get("es_budget")
    return (f" ({budget['pseudo_offspring']} x {budget['updates']} updates x {budget['batch_size']})" if budget
            else "")


def table(rows: list[tuple[str, Path]]) -> str:
    infos = [(label, path, load_task_model(path / "final.pt")[2]) for label, path in rows
             if (path / "final.pt").is_file()]
    if not infos:
        raise EsgdError("no row has a final.pt yet")
    kinds = {info["kind"] for _, _, info in infos}
    if len(kinds) > 1:
        raise EsgdError(f"rows of different kinds {sorted(kinds)} in one table")
    columns = COLUMNS[kinds.pop()]
    header = ["system", "exp dir", *[c[0] for c in columns], "top-1/4 CE", "samples/mbr", "total", "wall min"]
    lines = []
    for label, path, info in infos:
        top = info.get("top_valid_ce") or []
        lines.append([label + es_budget(info), str(path), *[f"{info[key]:.{digits}f}" for _, key, digits in columns],
                      f"[{min(top):.3f}, {max(top):.3f}]" if top else "-", count(info["member_samples"]),
                      count(info["total_samples"]), f"{info['wall_seconds'] / 60:.1f}"])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in [header, *lines])
    return f"{text}\n{NOTE}\n"


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-task-table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="also write the table here")
    parser.add_argument("rows", nargs="+", help="LABEL=EXP_DIR")
    args = parser.parse_args(argv)
    rows = []
    for row in args.rows:
        label, sep, path = row.partition("=")
        if not sep or not label or not path:
            raise EsgdError(f"row {row!r}: expected LABEL=EXP_DIR")
        rows.append((label, Path(path)))
    text = table(rows)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
