"""The few words the package writes into figures, in the chapter's language.

Code cells are the same in both languages, so a notebook never spells out a label: it asks
:func:`t` for it, and the language comes from :func:`cvt_edu.quiz.notebook_language`.
"""

from __future__ import annotations

__all__ = ["STRINGS", "CLASS_NAMES", "t", "class_names"]

STRINGS: dict[str, dict[str, str]] = {
    "pt": {
        "epoch": "época",
        "loss": "perda (entropia cruzada, nats)",
        "accuracy": "acurácia (%)",
        "train": "treino",
        "test": "teste",
        "learning_curves": "Curvas de aprendizado",
        "loss_title": "Perda",
        "accuracy_title": "Acurácia",
        "test_accuracy": "acurácia de teste (%)",
        "params_m": "parâmetros (milhões)",
        "throughput": "vazão de treino (imagens/s)",
        "confusion": "Matriz de confusão",
        "true_class": "classe verdadeira",
        "predicted_class": "classe prevista",
        "misclassified": "Imagens de teste classificadas errado (verdadeira -> prevista)",
        "cifar_images": "Imagens do CIFAR-10",
        "comparison": "ViT vs CvT",
        "train_fraction": "imagens de treino usadas (% de {n})",
        "data_fraction": "Acurácia de teste conforme a quantidade de dados",
    },
    "es": {
        "epoch": "época",
        "loss": "pérdida (entropía cruzada, nats)",
        "accuracy": "exactitud (%)",
        "train": "entrenamiento",
        "test": "prueba",
        "learning_curves": "Curvas de aprendizaje",
        "loss_title": "Pérdida",
        "accuracy_title": "Exactitud",
        "test_accuracy": "exactitud de prueba (%)",
        "params_m": "parámetros (millones)",
        "throughput": "rendimiento de entrenamiento (imágenes/s)",
        "confusion": "Matriz de confusión",
        "true_class": "clase verdadera",
        "predicted_class": "clase predicha",
        "misclassified": "Imágenes de prueba mal clasificadas (verdadera -> predicha)",
        "cifar_images": "Imágenes de CIFAR-10",
        "comparison": "ViT vs CvT",
        "train_fraction": "imágenes de entrenamiento usadas (% de {n})",
        "data_fraction": "Exactitud de prueba según la cantidad de datos",
    },
    "en": {
        "epoch": "epoch",
        "loss": "cross-entropy loss (nats)",
        "accuracy": "accuracy (%)",
        "train": "train",
        "test": "test",
        "learning_curves": "Learning curves",
        "loss_title": "Loss",
        "accuracy_title": "Accuracy",
        "test_accuracy": "test accuracy (%)",
        "params_m": "parameters (millions)",
        "throughput": "training throughput (images/s)",
        "confusion": "Confusion matrix",
        "true_class": "true class",
        "predicted_class": "predicted class",
        "misclassified": "Misclassified test images (true -> predicted)",
        "cifar_images": "CIFAR-10 images",
        "comparison": "ViT vs CvT",
        "train_fraction": "training images used (% of {n})",
        "data_fraction": "Test accuracy against the amount of data",
    },
}

# CIFAR-10 class names in each language (other data sets keep their folder names).
CLASS_NAMES: dict[str, dict[str, str]] = {
    "pt": dict(airplane="avião", automobile="automóvel", bird="pássaro", cat="gato", deer="cervo",
               dog="cachorro", frog="sapo", horse="cavalo", ship="navio", truck="caminhão"),
    "es": dict(airplane="avión", automobile="automóvil", bird="pájaro", cat="gato", deer="ciervo",
               dog="perro", frog="rana", horse="caballo", ship="barco", truck="camión"),
}


def class_names(classes: list[str] | tuple[str, ...], lang: str | None = None) -> list[str]:
    """The class names in ``lang`` where known (CIFAR-10), else unchanged."""
    if lang is None:
        from .quiz import notebook_language

        lang = notebook_language()
    names = CLASS_NAMES.get(lang, {})
    return [names.get(c, c) for c in classes]


def t(key: str, lang: str | None = None) -> str:
    """The text of ``key`` in ``lang`` ("pt", "es" or "en"; ``None``: the notebook's language).

    Raises:
        KeyError: for an unknown key or language, naming it.
    """
    if lang is None:
        from .quiz import notebook_language

        lang = notebook_language()
    if lang not in STRINGS:
        raise KeyError(f"no strings for language {lang!r}; languages: {sorted(STRINGS)}")
    if key not in STRINGS[lang]:
        raise KeyError(f"no text {key!r} in language {lang!r}")
    return STRINGS[lang][key]
