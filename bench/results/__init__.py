"""Results: the schema of a result file (:mod:`.schema`) and how result files are named, written and read
(:mod:`.store`). A result is made in one place, from a planned trial (:meth:`bench.harness.plan.PlannedTrial.result`)."""
