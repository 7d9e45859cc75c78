"""Training: data (:mod:`.data`), augmentation (:mod:`.augment`), loaders (:mod:`.loader`), the loop
(:mod:`.loop`), checkpoints (:mod:`.checkpoint`) and where a run happens (:mod:`.env`: device, quick mode, seeds)."""
