"""The trial harness: a trial planned once on the driver (:mod:`.plan`), run as named phases in a worker
(:mod:`.trial`, :mod:`.phases`), judged by the status rules (:mod:`.verdict`) and finished as a result in one place
(:mod:`.result`). It sits above the components it assembles (data, train, measure, downstream) and below the
scheduler that runs it."""
