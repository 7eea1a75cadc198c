"""One decoding job, whatever scores the frames (GMM or hybrid network): lattices of a job's utterances into
<decode-dir>/lat.J.gz, `frames seconds_likelihoods seconds_search` into <decode-dir>/timing.J, and the real-time
factor in the log (steps/decode.sh and steps/decode_nnet.sh sum the timing files)."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from esgd_asr.atomic import atomic_write_text
from esgd_asr.decode.lattice import LatticeDecoder, write_lattice_archive
from esgd_asr.errors import EsgdError

log = logging.getLogger(__name__)


def decode_job(decoder: LatticeDecoder, scored: Iterator[tuple[str, np.ndarray]], decode_dir: str | Path, job: int,
               where: str, frame_shift: float = 0.01, setup_seconds: float = 0.0) -> int:
    """Decode every (utterance, acoustic-scaled DecodableCtc log-likelihoods) of `scored`; the time spent producing
    them (plus `setup_seconds`, e.g. a batched network pass made beforehand) counts as likelihood time. An empty
    lattice is an error naming the utterance of `where` (the data dir); a partial one is kept with a warning.
    Returns the number of utterances decoded."""
    out = Path(decode_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames, like_seconds, search_seconds, partial = 0, setup_seconds, 0.0, []

    def lattices():
        nonlocal frames, like_seconds, search_seconds
        iterator = iter(scored)
        while True:
            start = time.perf_counter()
            try:
                utt, loglikes = next(iterator)
            except StopIteration:
                return
            like_seconds += time.perf_counter() - start
            result = decoder.decode(loglikes)
            search_seconds += result.seconds
            frames += loglikes.shape[0]
            if not result.reached_final:
                partial.append(utt)
                log.warning("utterance '%s': no final state reached, partial lattice kept", utt)
            if not result.lattice_text:
                raise EsgdError(f"{where}: utterance '{utt}': decoding produced an empty lattice")
            yield utt, result.lattice_text

    count = write_lattice_archive(out / f"lat.{job}.gz", lattices())
    atomic_write_text(out / f"timing.{job}", f"{frames} {like_seconds:.3f} {search_seconds:.3f}\n")
    audio = frames * frame_shift
    log.info("job %d: decoded %d utterances (%d partial), %.1f s of audio; likelihoods %.1f s, search %.1f s; "
             "real-time factor %.4f", job, count, len(partial), audio, like_seconds, search_seconds,
             (like_seconds + search_seconds) / max(audio, 1e-9))
    return count
