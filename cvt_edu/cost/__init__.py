"""What a model costs: FLOPs and parameters (:mod:`.flops`), the attention cost formulas (:mod:`.formulas`),
the resolution sweep (:mod:`.sweep`) and the benchmarks (:mod:`.bench`, :mod:`.bench_train`)."""
