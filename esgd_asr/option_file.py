"""Kaldi option files (conf/lda.conf, conf/tree.conf, conf/plp.conf, ...): one `--name=value` per line, `#` starts a
comment, a later line wins over an earlier one (as on a command line). The one reader of them: every command's
`--config FILE` (esgd_asr.cli.options) and the decision tree's options (esgd_asr.gmm.tree.TreeOptions)."""
from __future__ import annotations

from pathlib import Path

from esgd_asr.errors import EsgdError


def read_option_file(path: str | Path) -> list[str]:
    """The `--name=value` options of a Kaldi option file, in order; a bad line is an error naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise EsgdError(f"{path}: config file not found")
    options = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--") or "=" not in line:
            raise EsgdError(f"{path}:{lineno}: expected --name=value, got '{line}'")
        options.append(line)
    return options


def expand_option_files(argv: list[str], after: int = 0) -> list[str]:
    """`argv` with every `--config FILE` / `--config=FILE` replaced by its file's options, placed after the first
    `after` arguments (a subcommand's name, whose parser would not see them before it) and before the rest, so
    that the command line's own options override the files'."""
    files, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--config="):
            files.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    options = [option for path in files for option in read_option_file(path)]
    return rest[:after] + options + rest[after:]
