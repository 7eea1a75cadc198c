"""Which members of a population one process holds: a contiguous block, dealt out as Kaldi deals out jobs."""
from dataclasses import dataclass

from esgd_asr.data.kaldi_dir import split_share
from esgd_asr.errors import EsgdError


@dataclass(frozen=True)
class Shard:
    """Members [start, stop) of a population of `total` (a whole population: 0, total, total)."""

    start: int
    stop: int
    total: int

    @classmethod
    def whole(cls, total: int) -> "Shard":
        return cls(0, total, total)

    @classmethod
    def of(cls, total: int, rank: int, ranks: int) -> "Shard":
        """Rank `rank`'s block of `total` members over `ranks` processes: the first total % ranks get one more."""
        if not 0 < ranks <= total:
            raise EsgdError(f"shard: cannot deal {total} members over {ranks} processes (at least one each)")
        block = split_share(list(range(total)), ranks, rank + 1)
        return cls(block[0], block[-1] + 1, total)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)

    def indices(self) -> list[int]:
        return list(range(self.start, self.stop))
