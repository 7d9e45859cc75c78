"""TP 3 (Swin) and TP 4 (efficient attention), instructor versions: the contract's functions, pt = es, and
solutions equal to the course's own code (cvt_edu.windows, cvt_edu.pvt) and to plain softmax attention.

The grader's checks (cvt_edu.tp) test these solutions too; here they are compared without it, on shapes the
public checks do not use (rectangular maps, odd sizes, blocks that do not divide N)."""

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from cvt_edu import windows
from cvt_edu.pvt import PVTStageConfig, SpatialReductionAttention

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CONTRACT = {  # question -> parameters, as the TP contract gives them
    "tp3_swin": {
        "window_partition": ["x", "window"],
        "window_reverse": ["windows", "window", "height", "width"],
        "cyclic_shift": ["x", "shift"],
        "shifted_window_mask": ["height", "width", "window", "shift"],
        "relative_position_index": ["window"],
    },
    "tp4_efficient_attention": {
        "spatial_reduction_attention": ["x", "height", "width", "params", "num_heads", "sr_ratio"],
        "online_softmax": ["scores", "block_size"],
        "tiled_attention": ["q", "k", "v", "block_size"],
    },
}
NOTEBOOKS = [(name, lang) for name in CONTRACT for lang in ("pt", "es")]


def cells(name: str, lang: str) -> list[dict]:
    return json.loads((ROOT / "instructor" / lang / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def answers(name: str, lang: str = "pt") -> dict:
    """The functions the notebook's answer cells define, run in one namespace as the grader runs them."""
    namespace: dict = {}
    for cell in cells(name, lang):
        if "answer" in cell["metadata"].get("tags", []):
            exec(compile(source(cell), f"{name} answer cell", "exec"), namespace)
    return namespace


def code_without_comments(name: str, lang: str) -> list[str]:
    out = []
    for cell in cells(name, lang):
        if cell["cell_type"] == "code":
            lines = (re.sub(r"\s*#.*$", "", line).rstrip() for line in source(cell).splitlines())
            if not out:  # the setup cell's one line that differs between pt and es (tests/test_notebooks.py)
                lines = ('LANG = "<lang>"' if line == f'LANG = "{lang}"' else line for line in lines)
            out.append("\n".join(line for line in lines if line))
    return out


@pytest.mark.parametrize(("name", "lang"), NOTEBOOKS)
def test_each_question_has_an_answer_cell_with_the_contracts_signature_then_its_check_cell(name, lang):
    nb = json.loads((ROOT / "instructor" / lang / f"{name}.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"]["cvt_edu"]["lang"] == lang
    setup = json.loads((ROOT / "notebooks" / lang / "00_how_to_use.ipynb").read_text(encoding="utf-8"))["cells"][0]
    assert source(nb["cells"][0]) == source(setup) and "remove-cell" in nb["cells"][0]["metadata"]["tags"]
    found = {}
    for index, cell in enumerate(nb["cells"]):
        if "answer" not in cell["metadata"].get("tags", []):
            continue
        for node in ast.parse(source(cell)).body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = [a.arg for a in node.args.args]
                assert ast.get_docstring(node), f"{node.name} has no docstring"
                assert source(nb["cells"][index + 1]) == f'check("{node.name}", {node.name})'
    assert found == CONTRACT[name]


@pytest.mark.parametrize(("name", "lang"), NOTEBOOKS)
def test_every_solution_sits_between_markers_so_the_student_version_raises_not_implemented(name, lang):
    for cell in cells(name, lang):
        if "answer" not in cell["metadata"].get("tags", []):
            continue
        lines, out, indent = source(cell).splitlines(), [], None
        for line in lines:
            if line.strip() == BEGIN:
                assert indent is None
                indent = line[: len(line) - len(line.lstrip())]
            elif line.strip() == END:
                assert indent is not None and line == indent + END
                out.append(indent + "raise NotImplementedError")
                indent = None
            elif indent is None:
                out.append(line)
        assert indent is None
        namespace: dict = {}
        exec("\n".join(out), namespace)  # the student's cell: signature, docstring, hints, raise
        functions = [n.name for n in ast.parse(source(cell)).body if isinstance(n, ast.FunctionDef)]
        for function in functions:
            with pytest.raises(NotImplementedError):
                namespace[function](*[None] * len(CONTRACT[name][function]))


@pytest.mark.parametrize("name", CONTRACT)
def test_both_languages_have_the_same_code(name):
    assert code_without_comments(name, "pt") == code_without_comments(name, "es")


def test_tp3_solutions_equal_the_course_window_geometry():
    fns = answers("tp3_swin")
    for b, h, w, c, m in [(2, 6, 9, 2, 3), (1, 4, 8, 1, 4), (3, 10, 5, 2, 5), (1, 2, 2, 3, 2)]:
        x = torch.randn(b, h, w, c)
        win = fns["window_partition"](x, m)
        assert torch.equal(win, windows.window_partition(x, m))
        assert torch.equal(fns["window_reverse"](win, m, h, w), x)
        for s in range(m):
            assert torch.equal(fns["cyclic_shift"](x, s), windows.cyclic_shift(x, s))
            mask = fns["shifted_window_mask"](h, w, m, s)
            assert mask.dtype == torch.bool and torch.equal(mask, windows.shifted_window_mask(h, w, m, s) == 0)
    assert fns["shifted_window_mask"](8, 8, 4, 0).all()
    for m in (1, 2, 3, 7):
        index = fns["relative_position_index"](m)
        assert index.dtype == torch.int64 and torch.equal(index, windows.relative_position_index(m))


@pytest.mark.parametrize(("h", "w", "dim", "heads", "ratio"), [(5, 7, 12, 3, 2), (6, 6, 8, 2, 3), (4, 4, 8, 4, 1)])
def test_tp4_spatial_reduction_attention_equals_the_course_module(h, w, dim, heads, ratio):
    torch.manual_seed(0)
    module = SpatialReductionAttention(PVTStageConfig(embed_dim=dim, depth=1, num_heads=heads, sr_ratio=ratio)).eval()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    params = {"q.weight": module.qkv.q.weight, "q.bias": module.qkv.q.bias,
              "kv.weight": torch.cat([module.qkv.k.weight, module.qkv.v.weight]),
              "kv.bias": torch.cat([module.qkv.k.bias, module.qkv.v.bias]),
              "proj.weight": module.mha.proj.weight, "proj.bias": module.mha.proj.bias}
    if ratio > 1:
        params |= {"sr.weight": module.sr.weight, "sr.bias": module.sr.bias,
                   "norm.weight": module.norm.weight, "norm.bias": module.norm.bias}
    x = torch.randn(2, h * w, dim)
    with torch.no_grad():
        got = answers("tp4_efficient_attention")["spatial_reduction_attention"](x, h, w, params, heads, ratio)
        torch.testing.assert_close(got, module(x, (h, w)), atol=1e-5, rtol=1e-4)


def test_tp4_online_softmax_and_tiled_attention_equal_softmax_attention():
    fns = answers("tp4_efficient_attention")
    for shape, block in [((2, 3, 10), 4), ((5, 7), 1), ((3, 9), 100)]:
        scores = 10 * torch.randn(shape)
        torch.testing.assert_close(fns["online_softmax"](scores, block), torch.softmax(scores, -1))
    masked = torch.tensor([[-torch.inf, -torch.inf, 1.0, 2.0, -torch.inf]])  # a first block of -inf only
    torch.testing.assert_close(fns["online_softmax"](masked, 2), torch.softmax(masked, -1))
    q, k, v = torch.randn(2, 3, 9, 4), torch.randn(2, 3, 13, 4), torch.randn(2, 3, 13, 4)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 2.0, -1) @ v
    for block in (1, 5, 13):
        torch.testing.assert_close(fns["tiled_attention"](q, k, v, block), expected, atol=1e-5, rtol=1e-4)
