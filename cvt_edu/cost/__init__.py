"""What a model costs: FLOPs and parameters (:mod:`.flops`), the attention cost formulas (:mod:`.formulas`),
the resolution sweep (:mod:`.sweep`), the benchmarks (:mod:`.bench`, :mod:`.bench_train`) and how all of
them measure time and memory (:mod:`.measure`)."""
