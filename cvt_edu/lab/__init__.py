"""The chapters' experiments as computations: the main comparison (:mod:`.compare`), CvT's projection
ablation (:mod:`.ablation`), translation equivariance (:mod:`.shift`), fine-tuning (:mod:`.transfer`) and the
statistics for reading them (:mod:`.stats`). Their figures live in :mod:`cvt_edu.viz`."""
