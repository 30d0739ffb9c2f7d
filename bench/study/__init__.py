"""Studies: grids of trials that answer a research question, with scaling-law fits, paired comparisons and a report.

A study file (``studies/<name>.yaml``, :mod:`bench.study.spec`) names a base workload, the submissions to compare,
a grid over model size and budget, and seeds. :mod:`bench.study.expand` turns it into derived workloads and trial
requests, :mod:`bench.study.run` runs what is missing, :mod:`bench.study.fit` and :mod:`bench.study.paired` analyse
the results, and :mod:`bench.study.report` (with :mod:`bench.study.plots`) writes them up.
"""
