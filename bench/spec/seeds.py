"""Which seeds to run, as a person types them: a count (``3``: seeds 0, 1, 2), an inclusive range (``3..5``: seeds
3, 4, 5) or a list (``0,4,7``). A count alone cannot name seed 3 by itself, which re-running one seed of a result
(a maintainer's check) or filling in a missing seed needs."""

from __future__ import annotations

from bench.errors import BenchError

SYNTAX = "a count (3: seeds 0..2), a range (3..5) or a list (0,4,7)"


def parse_seeds(text: str, where: str = "--seeds") -> list[int]:
    """The seeds ``text`` names, in the order given; problems name ``where`` the text came from."""
    text = text.strip()
    try:
        if ".." in text:
            first, _, last = text.partition("..")
            start, stop = int(first), int(last)
            if start > stop:
                raise BenchError(f"{where}: the range {text!r} is empty; write it low..high, e.g. 3..5")
            seeds = list(range(start, stop + 1))
        elif "," in text:
            seeds = [int(part) for part in text.split(",")]
        else:
            count = int(text)
            if count < 1:
                raise BenchError(f"{where}: a count of seeds must be 1 or more, got {text!r}")
            seeds = list(range(count))
    except ValueError:
        raise BenchError(f"{where}: expected {SYNTAX}, got {text!r}") from None
    negative = [seed for seed in seeds if seed < 0]
    if negative:
        raise BenchError(f"{where}: seeds are 0 or more, got {negative[0]}")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise BenchError(f"{where}: seed {repeated[0]} is given twice")
    return seeds
