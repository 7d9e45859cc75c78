"""The course's trained models, shipped inside the package: :func:`.load.load_trained` reads one offline, with its
:class:`.record.TrainedRecord` (labels, data, recipe, seed, accuracies); :mod:`.ship` turns a finished run into one.

Each shipped model is a folder ``<name>/`` beside this file: ``model.safetensors`` (float16), ``config.json`` and
``record.json``. ``$CVT_EDU_TRAINED`` points the loader and the shipping step at another folder (the tests use it).
"""
