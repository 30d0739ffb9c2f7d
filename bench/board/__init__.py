"""The leaderboard: ranking statistics over seeds and the pages built from result files.

Entry points: :func:`bench.board.build.build_leaderboard` (README.md, index.html, entry pages, plots) and
:func:`bench.board.compare.compare` (two submissions side by side); :mod:`bench.board.delta` holds the
difference and speedup both of them state.
"""
