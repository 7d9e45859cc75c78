"""Outside weights in the course's models: :func:`.load.load_pretrained` and one converter per format
(Hugging Face CvT and ViT, torchvision ViT in :mod:`.load`; Swin and PVT in :mod:`.swin_pvt`), all renaming
through the rule tables of :mod:`.renaming`."""
