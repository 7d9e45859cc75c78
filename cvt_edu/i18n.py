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
        # chapters 6-8
        "sweep_title": "Custo de um forward conforme a resolução",
        "sweep_resolution": "lado da imagem (pixels, escala log)",
        "sweep_gflops": "GFLOPs por forward (escala log)",
        "sweep_gflops_title": "FLOPs (contados)",
        "sweep_time": "tempo de um forward (ms, escala log)",
        "sweep_time_title": "Tempo (medido)",
        "sweep_memory": "pico de memória (MiB, escala log)",
        "sweep_memory_title": "Memória (medida)",
        "win_title": "Partição em janelas do Swin",
        "win_image": "mapa de {th}×{tw} tokens (patches de {p}×{p} px)\njanelas de {m}×{m} tokens",
        "win_tiles": "saída de window_partition: {n} janelas\nforma {shape}",
        "shift_title": "Janelas deslocadas (em cima) e como o Swin as calcula com o deslocamento cíclico (embaixo)",
        "shift_displaced": "s = {s}: {n} janelas deslocadas",
        "shift_rolled": "após cyclic_shift: {n} janelas M×M",
        "mask_title": "Máscara das janelas deslocadas: mapa {h}×{w}, M = {m}, s = {s} (linhas: queries; colunas: keys)",
        "mask_window": "janela {k}: {b} bloqueados",
        "mask_allowed": "pode atender (0)",
        "mask_blocked": "bloqueado (-100)",
        "rpi_title": "Índice da posição relativa numa janela de M = {m}: {n} vieses aprendidos por cabeça",
        "rpi_table": "tabela inteira ({n}×{n} pares de tokens)",
        "rpi_query": "token da query i",
        "rpi_key": "token da key j",
        "rpi_index": "linha de B̂ (0 a {k})",
        "rpi_row": "query {i} (linha {y}, coluna {x}): o índice de cada key",
        "merge_title": "Patch merging: cada grupo 2×2 vira um token (4C números, depois linear para 2C)",
        "merge_before": "antes: mapa {h}×{w}, tokens numerados",
        "merge_after": "depois: mapa {h}×{w}, tokens concatenados nesta ordem",
        "sr_title": "Redução espacial: as keys e values que a atenção enxerga",
        "sr_panel": "R = {r}: {h}×{w} = {n} K/V para {q} queries",
        "maps_title": "Mapas de tokens por estágio (cores: 3 componentes principais)",
        "maps_image": "imagem {h}×{w}",
        "maps_stage": "estágio {i}: {h}×{w} tokens, C = {c}",
        "attn_cost_title": "Custo de uma camada de atenção conforme o número de tokens",
        "attn_tokens": "tokens N = h·w (escala log)",
        "attn_macs": "multiplicações-somas (escala log)",
        "attn_formula": "fórmula",
        "attn_measured": "medido (FlopCounterMode)",
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
        # chapters 6-8
        "sweep_title": "Costo de un forward según la resolución",
        "sweep_resolution": "lado de la imagen (píxeles, escala log)",
        "sweep_gflops": "GFLOPs por forward (escala log)",
        "sweep_gflops_title": "FLOPs (contados)",
        "sweep_time": "tiempo de un forward (ms, escala log)",
        "sweep_time_title": "Tiempo (medido)",
        "sweep_memory": "pico de memoria (MiB, escala log)",
        "sweep_memory_title": "Memoria (medida)",
        "win_title": "Partición en ventanas de Swin",
        "win_image": "mapa de {th}×{tw} tokens (parches de {p}×{p} px)\nventanas de {m}×{m} tokens",
        "win_tiles": "salida de window_partition: {n} ventanas\nforma {shape}",
        "shift_title": "Ventanas desplazadas (arriba) y cómo Swin las calcula con el desplazamiento cíclico (abajo)",
        "shift_displaced": "s = {s}: {n} ventanas desplazadas",
        "shift_rolled": "tras cyclic_shift: {n} ventanas M×M",
        "mask_title": "Máscara de las ventanas desplazadas: mapa {h}×{w}, M = {m}, s = {s} (filas: queries; columnas: keys)",
        "mask_window": "ventana {k}: {b} bloqueados",
        "mask_allowed": "puede atender (0)",
        "mask_blocked": "bloqueado (-100)",
        "rpi_title": "Índice de posición relativa en una ventana de M = {m}: {n} sesgos aprendidos por cabeza",
        "rpi_table": "tabla completa ({n}×{n} pares de tokens)",
        "rpi_query": "token query i",
        "rpi_key": "token key j",
        "rpi_index": "fila de B̂ (0 a {k})",
        "rpi_row": "query {i} (fila {y}, columna {x}): el índice de cada key",
        "merge_title": "Patch merging: cada grupo 2×2 se vuelve un token (4C números, luego lineal a 2C)",
        "merge_before": "antes: mapa {h}×{w}, tokens numerados",
        "merge_after": "después: mapa {h}×{w}, tokens concatenados en este orden",
        "sr_title": "Reducción espacial: las keys y values que ve la atención",
        "sr_panel": "R = {r}: {h}×{w} = {n} K/V para {q} queries",
        "maps_title": "Mapas de tokens por etapa (colores: 3 componentes principales)",
        "maps_image": "imagen {h}×{w}",
        "maps_stage": "etapa {i}: {h}×{w} tokens, C = {c}",
        "attn_cost_title": "Costo de una capa de atención según el número de tokens",
        "attn_tokens": "tokens N = h·w (escala log)",
        "attn_macs": "multiplicaciones-sumas (escala log)",
        "attn_formula": "fórmula",
        "attn_measured": "medido (FlopCounterMode)",
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
        # chapters 6-8
        "sweep_title": "Cost of a forward pass against resolution",
        "sweep_resolution": "image side (pixels, log scale)",
        "sweep_gflops": "GFLOPs per forward pass (log scale)",
        "sweep_gflops_title": "FLOPs (counted)",
        "sweep_time": "forward time (ms, log scale)",
        "sweep_time_title": "Time (measured)",
        "sweep_memory": "peak memory (MiB, log scale)",
        "sweep_memory_title": "Memory (measured)",
        "win_title": "Swin's window partition",
        "win_image": "{th}×{tw} token map ({p}×{p} px patches)\n{m}×{m}-token windows",
        "win_tiles": "window_partition output: {n} windows\nshape {shape}",
        "shift_title": "Shifted windows (top) and how Swin computes them with a cyclic shift (bottom)",
        "shift_displaced": "s = {s}: {n} shifted windows",
        "shift_rolled": "after cyclic_shift: {n} M×M windows",
        "mask_title": "Shifted-window mask: {h}×{w} map, M = {m}, s = {s} (rows: queries; columns: keys)",
        "mask_window": "window {k}: {b} blocked",
        "mask_allowed": "may attend (0)",
        "mask_blocked": "blocked (-100)",
        "rpi_title": "Relative position index in an M = {m} window: {n} learned biases per head",
        "rpi_table": "whole table ({n}×{n} token pairs)",
        "rpi_query": "query token i",
        "rpi_key": "key token j",
        "rpi_index": "row of B̂ (0 to {k})",
        "rpi_row": "query {i} (row {y}, column {x}): the index of every key",
        "merge_title": "Patch merging: each 2×2 group becomes one token (4C numbers, then linear to 2C)",
        "merge_before": "before: {h}×{w} map, numbered tokens",
        "merge_after": "after: {h}×{w} map, tokens concatenated in this order",
        "sr_title": "Spatial reduction: the keys and values attention sees",
        "sr_panel": "R = {r}: {h}×{w} = {n} K/V for {q} queries",
        "maps_title": "Token maps per stage (colours: 3 principal components)",
        "maps_image": "image {h}×{w}",
        "maps_stage": "stage {i}: {h}×{w} tokens, C = {c}",
        "attn_cost_title": "Cost of one attention layer against the number of tokens",
        "attn_tokens": "tokens N = h·w (log scale)",
        "attn_macs": "multiply-adds (log scale)",
        "attn_formula": "formula",
        "attn_measured": "measured (FlopCounterMode)",
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
