"""Training: how to train (:mod:`.config`), data (:mod:`.data`), augmentation (:mod:`.augment`), loaders
(:mod:`.loader`), the loop (:mod:`.loop`), checkpoints and trainer state (:mod:`.checkpoint`), training and
recording a run in its folder (:mod:`.run`) and where a run happens (:mod:`.env`: device, quick mode, seeds,
run folders)."""
