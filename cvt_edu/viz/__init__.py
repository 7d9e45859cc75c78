"""Every figure of the course: training curves and images (:mod:`.plots`), patches (:mod:`.patches`),
positional embeddings (:mod:`.positional`), attention maps (:mod:`.attention`), token embeddings
(:mod:`.embedding`), Swin's windows (:mod:`.windows`), PVT's pyramid (:mod:`.pyramid`). Each takes ``lang=``."""
