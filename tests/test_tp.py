"""The TPs' package side: check() on right and wrong answers, in pt and es, and the grader end to end.

The right answers are tests/tp_solutions.py (the package ships none). One grading run (three child
processes) covers a correct submission, a ready-made implementation, an endless loop, a syntax error and a
file that is not a notebook.
"""

import csv
import inspect
import math
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from cvt_edu import flash, windows
from cvt_edu.cli import main
from cvt_edu.tp import TPS, check
from cvt_edu.tp.questions import QUESTIONS

sys.path.insert(0, str(Path(__file__).parent))
import tp_solutions as sol  # noqa: E402


def failure(question, fn, lang="en"):
    """check's message for a wrong answer (the test fails if check accepts it)."""
    with pytest.raises(AssertionError) as e:
        check(question, fn, lang)
    return str(e.value)


def test_every_question_is_in_one_tp_and_has_a_solution():
    names = [q for a in TPS.values() for q in a.questions]
    assert sorted(names) == sorted(QUESTIONS) == sorted(sol.SOLUTIONS)
    assert [a.name for a in TPS.values()] == ["tp1_vit", "tp2_cvt", "tp3_swin", "tp4_efficient_attention"]


@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_a_right_answer_passes_check(question, capsys):
    assert check(question, sol.SOLUTIONS[question], "pt") is None
    assert f"✓ {question}" in capsys.readouterr().out


# One plausible mistake per question: (question, wrong answer, what the message must say).
def _patchify_channels_first(images, patch_size):
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=patch_size, p2=patch_size)


def _embedding_without_pos(images, weight, bias, cls_token, pos_embed, patch_size):
    x = sol.patchify(images, patch_size) @ weight.T + bias
    return torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1)


def _attention_without_scale(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def _heads_split_wrong(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads):
    q, k, v = (rearrange(t, "b n (d h) -> b h n d", h=num_heads) for t in (x @ qkv_weight.T + qkv_bias).chunk(3, dim=-1))
    return rearrange(sol.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)") @ proj_weight.T + proj_bias


def _post_norm_block(x, params, num_heads):
    p, d = params, x.shape[-1]
    x = F.layer_norm(x + sol.multi_head_attention(x, p["qkv.weight"], p["qkv.bias"], p["proj.weight"], p["proj.bias"], num_heads),
                     (d,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
    y = F.gelu(x @ p["fc1.weight"].T + p["fc1.bias"]) @ p["fc2.weight"].T + p["fc2.bias"]
    return F.layer_norm(x + y, (d,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)


def _map_size_rounded_up(size, kernel, stride, padding):
    return math.ceil((size + 2 * padding - kernel) / stride) + 1


def _embedding_channels_last(images, weight, bias, stride, padding, norm_weight, norm_bias):
    tokens, size = sol.conv_token_embedding(images, weight, bias, stride, padding, norm_weight, norm_bias)
    return tokens.transpose(1, 2), size


def _batch_norm_in_training_mode(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, pw_weight, stride):
    x = F.conv2d(rearrange(tokens, "b (h w) d -> b d h w", h=height), dw_weight, stride=stride, padding=1, groups=tokens.shape[-1])
    x = F.batch_norm(x, None, None, bn_weight, bn_bias, training=True, eps=1e-5)
    return rearrange(x, "b d h w -> b (h w) d") @ pw_weight.T


def _cls_dropped(tokens, height, width, *rest):
    return sol.conv_projection(tokens[:, 1:], height, width, *rest)


def _windows_column_major(x, window):
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nw nh) m1 m2 c", m1=window, m2=window)


def _reverse_height_width_swapped(windows, window, height, width):
    return sol.window_reverse(windows, window, width, height)


def _shift_the_wrong_way(x, shift):
    return torch.roll(x, (shift, shift), (1, 2))


def _mask_without_the_shift(height, width, window, shift):
    return torch.ones((height // window) * (width // window), window**2, window**2, dtype=torch.bool)


def _index_without_offset(window):
    rows, cols = (t.flatten() for t in torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    return (rows[:, None] - rows[None, :]) * (2 * window - 1) + (cols[:, None] - cols[None, :])


def _sra_without_norm(x, height, width, params, num_heads, sr_ratio):
    params = dict(params)
    if "norm.weight" in params:
        params["norm.weight"], params["norm.bias"] = torch.ones_like(params["norm.weight"]), torch.zeros_like(params["norm.bias"])
    return sol.spatial_reduction_attention(x, height, width, params, num_heads, sr_ratio)


def _softmax_sum_not_rescaled(scores, block_size):
    m, s = torch.full(scores.shape[:-1] + (1,), -math.inf), torch.zeros(scores.shape[:-1] + (1,))
    for start in range(0, scores.shape[-1], block_size):
        block = scores[..., start : start + block_size]
        m = torch.maximum(m, block.amax(dim=-1, keepdim=True))
        s = s + torch.exp(block - m).sum(dim=-1, keepdim=True)
    return torch.exp(scores - m) / s


def _tiled_full_matrix(q, k, v, block_size):
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return (weights / weights.sum(dim=-1, keepdim=True)) @ v


WRONG = [
    ("patchify", _patchify_channels_first, "first mismatch at index"),
    ("patch_embedding", _embedding_without_pos, "then add pos_embed"),
    ("scaled_dot_product_attention", _attention_without_scale, "/ sqrt(d)"),
    ("scaled_dot_product_attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
     "uses a ready-made implementation: torch.nn.functional.scaled_dot_product_attention"),
    ("multi_head_attention", _heads_split_wrong, "b n (h d) -> b h n d"),
    ("encoder_block", _post_norm_block, "pre-norm"),
    ("multi_head_attention", lambda x, qw, qb, pw, pb, h: torch.nn.MultiheadAttention(x.shape[-1], h, batch_first=True)(x, x, x)[0],
     "uses a ready-made implementation: torch.nn.MultiheadAttention"),
    ("encoder_block", lambda x, params, h: torch.nn.TransformerEncoderLayer(x.shape[-1], h, norm_first=True, batch_first=True)(x),
     "uses a ready-made implementation: torch.nn.TransformerEncoderLayer"),
    ("token_map_size", _map_size_rounded_up, "expected 56, got 57"),
    ("token_map_size", lambda size, kernel, stride, padding: (size + 2 * padding - kernel) / stride + 1, "expected an int, got float"),
    ("conv_token_embedding", _embedding_channels_last, "output [0]: expected shape (2, 16, 8), got (2, 8, 16)"),
    ("conv_projection", _batch_norm_in_training_mode, "BatchNorm in eval mode"),
    ("conv_projection_with_cls", _cls_dropped, "expected shape (2, 17, 8), got (2, 16, 8)"),
    ("window_partition", _windows_column_major, "windows of each image, row-major"),
    ("window_partition", windows.window_partition, "uses a ready-made implementation: cvt_edu.windows.window_partition"),
    ("window_reverse", _reverse_height_width_swapped, "expected shape (1, 6, 4, 2), got (1, 4, 6, 2)"),
    ("cyclic_shift", _shift_the_wrong_way, "torch.roll by -shift"),
    ("shifted_window_mask", _mask_without_the_shift, "entries differ"),
    ("relative_position_index", _index_without_offset, "(dy + M - 1)"),
    ("spatial_reduction_attention", _sra_without_norm, "LayerNorm"),
    ("online_softmax", _softmax_sum_not_rescaled, "running max"),
    ("online_softmax", lambda scores, block_size: scores.softmax(-1), "ready-made implementation: torch.softmax"),
    ("tiled_attention", _tiled_full_matrix, "was built (12288 elements, at least N_q·N_k = 6144)"),
    ("tiled_attention", lambda q, k, v, b: sol.tiled_attention(q, k, v * 2, b), "first mismatch"),
    ("tiled_attention", lambda q, k, v, b: flash.flash_attention(q, k, v, block_size=b),
     "uses a ready-made implementation: cvt_edu.flash.flash_attention"),
]


@pytest.mark.parametrize("question, wrong, says", WRONG, ids=[f"{q}-{i}" for i, (q, _, _) in enumerate(WRONG)])
def test_a_plausible_wrong_answer_fails_check_with_a_clear_message(question, wrong, says):
    message = failure(question, wrong)
    assert message.startswith(f"{question}, case ") and says in message, message
    assert "\n" not in message


def test_shape_dtype_exception_and_unfinished_answers_are_named(capsys):
    assert "expected shape (2, 16, 48), got (2, 48, 16)" in failure("patchify", lambda x, p: sol.patchify(x, p).transpose(1, 2))
    assert "expected dtype torch.float32, got torch.float64" in failure("patchify", lambda x, p: sol.patchify(x, p).double())
    assert "expected a tensor, got list" in failure("patchify", lambda x, p: [1, 2])

    def broken(images, patch_size):
        return images.view(-1, 7, 5)

    message = failure("patchify", broken)
    assert "your function raised RuntimeError: shape '[-1, 7, 5]' is invalid" in message
    assert f"(line {broken.__code__.co_firstlineno + 1})" in message

    def unfinished(images, patch_size):
        # Hint: einops.rearrange
        raise NotImplementedError

    assert failure("patchify", unfinished).endswith("(images (2, 3, 16, 16), patch_size=4): not implemented yet")
    assert capsys.readouterr().out == ""  # nothing printed when the answer is wrong


def test_messages_in_portuguese_and_spanish():
    pt = failure("shifted_window_mask", _mask_without_the_shift, "pt")
    es = failure("shifted_window_mask", _mask_without_the_shift, "es")
    assert pt.startswith("shifted_window_mask, caso 1 de 2") and "entradas diferem). Dica: rotule cada token" in pt
    assert es.startswith("shifted_window_mask, caso 1 de 2") and "entradas difieren). Pista: etiqueta cada token" in es
    assert failure("patchify", lambda x, p: x, "pt").endswith("esperava shape (2, 16, 48), recebi (2, 3, 16, 16)")
    assert failure("patchify", lambda x, p: x, "es").endswith("se esperaba la forma (2, 16, 48), llegó (2, 3, 16, 16)")


def test_check_refuses_an_unknown_question_and_what_is_not_a_function():
    with pytest.raises(ValueError, match=r"questão desconhecida 'patchfy'; esperava uma de: patchify, patch_embedding"):
        check("patchfy", sol.patchify, "pt")
    assert "expected a function, got NoneType None" in failure("patchify", None)
    with pytest.raises(ValueError, match="no TP messages in language 'fr'"):
        check("patchify", sol.patchify, "fr")


# The grader, end to end ---------------------------------------------------------------------------------------

SETUP = "import math\nimport torch\nimport torch.nn.functional as F\nfrom einops import rearrange\nfrom cvt_edu.tp import check"
TP1 = TPS[1].questions


def notebook(path, answers, lang=None):
    """A TP notebook: a setup cell, then per answer an answer cell and its check cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(SETUP))
    for name, source in answers:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["answer"]}))
        nb.cells.append(nbformat.v4.new_code_cell(f'check("{name}", {name})'))
    if lang:
        nb.metadata["cvt_edu"] = {"lang": lang}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def solution(name):
    return inspect.getsource(sol.SOLUTIONS[name])


READY_MADE_SDPA = "def scaled_dot_product_attention(q, k, v):\n    return F.scaled_dot_product_attention(q, k, v)\n"
OWN_MHA = textwrap.dedent('''
    def multi_head_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads):
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=num_heads) for t in (x @ qkv_weight.T + qkv_bias).chunk(3, dim=-1))
        out = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v
        return rearrange(out, "b h n d -> b n (h d)") @ proj_weight.T + proj_bias
''')
COURSE_BLOCK = textwrap.dedent('''
    def encoder_block(x, params, num_heads):
        from cvt_edu.attention import MultiHeadAttention
        return MultiHeadAttention(embed_dim=x.shape[-1], num_heads=num_heads)(x, x, x)
''')


def test_grade_end_to_end(tmp_path, capsys):
    subs = tmp_path / "subs"
    right = notebook(subs / "pt" / "ana.ipynb", [(n, solution(n)) for n in TP1])
    ready_made = notebook(subs / "es" / "bruno.ipynb", [("patchify", solution("patchify")), ("patch_embedding", solution("patch_embedding")),
                                                        ("scaled_dot_product_attention", READY_MADE_SDPA),
                                                        ("multi_head_attention", OWN_MHA), ("encoder_block", COURSE_BLOCK)])
    endless = notebook(subs / "carla.ipynb", [("patchify", "while True:\n    pass\n")], lang="pt")
    syntax = notebook(subs / "pt" / "davi.ipynb", [("patchify", "def patchify(images, patch_size:\n    return images\n")])
    not_notebook = subs / "eva.ipynb"
    not_notebook.write_text("this is not JSON")
    out = tmp_path / "grades" / "tp1.csv"

    code = main(["grade", "--tp", "1", str(right), str(ready_made), str(endless), str(syntax), str(not_notebook), "--out", str(out),
                 "--time-limit", "5", "--quick", "--seed", "7"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    rows = {Path(r["file"]).name: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert list(rows) == ["ana.ipynb", "bruno.ipynb", "carla.ipynb", "davi.ipynb", "eva.ipynb"]
    assert list(rows["ana.ipynb"]) == ["file", *TP1, "total", "max", "feedback"]

    assert [rows["ana.ipynb"][q] for q in TP1] == ["1"] * 5 and rows["ana.ipynb"]["total"] == "5" == rows["ana.ipynb"]["max"]
    assert rows["ana.ipynb"]["feedback"] == ""

    bruno = rows["bruno.ipynb"]  # in es/: Spanish feedback
    assert [bruno[q] for q in TP1] == ["1", "1", "0", "1", "0"] and bruno["total"] == "3"
    assert "scaled_dot_product_attention, caso 1 de 2" in bruno["feedback"]
    assert "usa una implementación ya hecha: torch.nn.functional.scaled_dot_product_attention" in bruno["feedback"]
    assert "usa una implementación ya hecha: cvt_edu.attention.MultiHeadAttention" in bruno["feedback"]

    assert rows["carla.ipynb"]["total"] == "0" and rows["carla.ipynb"]["feedback"] == "tempo esgotado após 5 s"
    assert rows["davi.ipynb"]["feedback"] == "SyntaxError linha 1 da célula de resposta 1: '(' was never closed"
    assert rows["eva.ipynb"]["total"] == "0" and rows["eva.ipynb"]["feedback"].startswith("não é um notebook: ")

    feedback = out.parent / "tp1"
    assert sorted(p.name for p in feedback.iterdir()) == ["ana.md", "bruno.md", "carla.md", "davi.md", "eva.md"]
    ana = (feedback / "ana.md").read_text(encoding="utf-8")
    assert "Total: 5 / 5 pontos." in ana and "semente 7" in ana and "- **patchify**: 1 / 1. todos os 2 casos ocultos passam" in ana
    assert "Total: 3 / 5 puntos." in (feedback / "bruno.md").read_text(encoding="utf-8")
    assert "ana.ipynb: 5 / 5" in stdout and f"wrote {out}" in stdout
    assert not list(out.parent.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_grade_refuses_a_missing_submission_before_running_or_writing_anything(tmp_path, capsys):
    right = notebook(tmp_path / "ana.ipynb", [("patchify", solution("patchify"))])
    out = tmp_path / "grades.csv"
    out.write_text("last week's grades")
    code = main(["grade", "--tp", "1", str(right), str(tmp_path / "missing.ipynb"), "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"cvt-edu grade: error: no submission {tmp_path / 'missing.ipynb'}"
    assert out.read_text() == "last week's grades" and not (tmp_path / "grades").exists()

    (tmp_path / "empty").mkdir()
    assert main(["grade", "--tp", "1", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no .ipynb file in the folder" in capsys.readouterr().err
    assert main(["grade", "--tp", "1", str(right), "--out", str(out), "--time-limit", "0"]) == 2
    assert "expected a time limit > 0 seconds, got 0.0" in capsys.readouterr().err
    assert main(["grade", "--tp", "1", str(right), "--out", str(tmp_path / "grades")]) == 2
    assert "expected --out to name a .csv file" in capsys.readouterr().err
    assert out.read_text() == "last week's grades" and sorted(p.name for p in tmp_path.iterdir()) == ["ana.ipynb", "empty", "grades.csv"]
