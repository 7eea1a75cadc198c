"""The parts of a Kaldi lang dir that GMM training, graphs and decoding read, checked for consistency."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kaldifst

from esgd_asr.errors import EsgdError


def read_symbols(path: Path) -> dict[str, int]:
    """A symbol table `symbol id` per line."""
    if not path.is_file():
        raise EsgdError(f"{path}: no such file")
    table = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise EsgdError(f"{path}:{lineno}: expected '<symbol> <id>', got '{line}'")
        table[fields[0]] = int(fields[1])
    return table


def read_int_lines(path: Path) -> list[list[int]]:
    if not path.is_file():
        raise EsgdError(f"{path}: no such file")
    try:
        return [[int(x) for x in line.split()] for line in path.read_text().splitlines() if line.strip()]
    except ValueError:
        raise EsgdError(f"{path}: expected integers") from None


@dataclass
class LangDir:
    """phones.txt, words.txt, topo, phones/{sets,disambig,silence,word_boundary}.int and oov.int of a lang dir."""

    path: Path
    phones: dict[str, int]
    words: dict[str, int]
    topo_text: str
    phone_sets: list[list[int]]
    disambig: list[int]
    silence: list[int]
    word_boundary: dict[int, str]
    oov: int

    @classmethod
    def read(cls, path: str | Path) -> "LangDir":
        path = Path(path)
        if not path.is_dir():
            raise EsgdError(f"{path}: not a lang directory")
        topo = path / "topo"
        if not topo.is_file():
            raise EsgdError(f"{topo}: no such file")
        boundary = {}
        for lineno, line in enumerate((path / "phones/word_boundary.int").read_text().splitlines(), 1) \
                if (path / "phones/word_boundary.int").is_file() else []:
            fields = line.split()
            if len(fields) != 2 or not fields[0].isdigit():
                raise EsgdError(f"{path / 'phones/word_boundary.int'}:{lineno}: bad line '{line}'")
            boundary[int(fields[0])] = fields[1]
        oov = read_int_lines(path / "oov.int")
        lang = cls(path, read_symbols(path / "phones.txt"), read_symbols(path / "words.txt"), topo.read_text(),
                   read_int_lines(path / "phones/sets.int"), [x for r in read_int_lines(path / "phones/disambig.int")
                                                              for x in r],
                   [x for r in read_int_lines(path / "phones/silence.int") for x in r], boundary,
                   oov[0][0] if oov and oov[0] else -1)
        lang.check()
        return lang

    def check(self) -> None:
        """Every real phone is in exactly one set, disambiguation symbols are phones, the OOV word exists."""
        real = {i for p, i in self.phones.items() if i > 0 and i not in self.disambig}
        in_sets = [p for s in self.phone_sets for p in s]
        if len(in_sets) != len(set(in_sets)) or set(in_sets) != real:
            raise EsgdError(f"{self.path / 'phones/sets.int'}: phone sets do not cover phones.txt's phones exactly "
                            f"once ({len(set(in_sets))} phones in sets, {len(real)} in phones.txt)")
        ids = set(self.phones.values())
        for d in self.disambig:
            if d not in ids:
                raise EsgdError(f"{self.path / 'phones/disambig.int'}: id {d} is not in phones.txt")
        if self.oov not in set(self.words.values()):
            raise EsgdError(f"{self.path / 'oov.int'}: the OOV word id {self.oov} is not in words.txt")

    def check_phones(self, model_phones: list[int], what: str) -> None:
        """Stop unless `model_phones` (a model's or topology's phones) are exactly this lang's real phones."""
        real = sorted(i for p, i in self.phones.items() if i > 0 and i not in self.disambig)
        if sorted(model_phones) != real:
            missing = sorted(set(real) - set(model_phones))[:3]
            extra = sorted(set(model_phones) - set(real))[:3]
            raise EsgdError(f"{what}: phone set does not match {self.path / 'phones.txt'} "
                            f"(missing {missing}, unexpected {extra}); was it built with another lang dir?")

    def word_ids(self, words: list[str], where: str, map_oov: bool = True) -> list[int]:
        """Word ids of a transcript; unknown words become the OOV word (Kaldi's sym2int.pl --map-oov)."""
        out = []
        for word in words:
            if word in self.words:
                out.append(self.words[word])
            elif map_oov:
                out.append(self.oov)
            else:
                raise EsgdError(f"{where}: word '{word}' is not in {self.path / 'words.txt'}")
        return out

    def id2word(self) -> dict[int, str]:
        return {i: w for w, i in self.words.items()}

    def id2phone(self) -> dict[int, str]:
        return {i: p for p, i in self.phones.items()}

    def read_fst(self, name: str) -> kaldifst.StdVectorFst:
        path = self.path / name
        if not path.is_file():
            raise EsgdError(f"{path}: no such file")
        try:
            return kaldifst.StdVectorFst.read(str(path))
        except RuntimeError as err:
            raise EsgdError(f"{path}: cannot read FST ({err})") from None
