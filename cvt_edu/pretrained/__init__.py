"""Outside weights in the course's models: :func:`.load.load_pretrained` and one converter per outside format
(:mod:`.cvt`, :mod:`.vit` (Hugging Face and torchvision), :mod:`.swin`, :mod:`.pvt`), all renaming through the rule
tables of :mod:`.renaming`; :mod:`.common` holds what the converters share."""
