"""The practical assignments (TPs): student versions made from the instructor versions, the same code in pt
and es, no solution left in a student version, and every question of the contract answered once and checked once.

nbval runs the student versions of notebooks/pt (their check cells say "not implemented yet" without raising);
here the real grader scores the instructor versions full and the student versions zero.
"""

import ast
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from test_notebooks import code_cells

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("pt", "es")

# The TP contract: number -> (notebook name, {question: the answer function's arguments}).
CONTRACT = {
    1: ("tp1_vit", {
        "patchify": ("images", "patch_size"),
        "patch_embedding": ("images", "weight", "bias", "cls_token", "pos_embed", "patch_size"),
        "scaled_dot_product_attention": ("q", "k", "v"),
        "multi_head_attention": ("x", "qkv_weight", "qkv_bias", "proj_weight", "proj_bias", "num_heads"),
        "encoder_block": ("x", "params", "num_heads"),
    }),
    2: ("tp2_cvt", {
        "token_map_size": ("size", "kernel", "stride", "padding"),
        "conv_token_embedding": ("images", "weight", "bias", "stride", "padding", "norm_weight", "norm_bias"),
        "conv_projection": ("tokens", "height", "width", "dw_weight", "bn_weight", "bn_bias", "bn_mean", "bn_var",
                            "pw_weight", "stride"),
        "conv_projection_with_cls": ("tokens", "height", "width", "dw_weight", "bn_weight", "bn_bias", "bn_mean",
                                     "bn_var", "pw_weight", "stride"),
    }),
    3: ("tp3_swin", {
        "window_partition": ("x", "window"),
        "window_reverse": ("windows", "window", "height", "width"),
        "cyclic_shift": ("x", "shift"),
        "shifted_window_mask": ("height", "width", "window", "shift"),
        "relative_position_index": ("window",),
    }),
    4: ("tp4_efficient_attention", {
        "spatial_reduction_attention": ("x", "height", "width", "params", "num_heads", "sr_ratio"),
        "online_softmax": ("scores", "block_size"),
        "tiled_attention": ("q", "k", "v", "block_size"),
    }),
}
VERSIONS = [(tp, lang, kind) for tp in CONTRACT for lang in LANGS for kind in ("instructor", "notebooks")]


def notebook_path(tp: int, lang: str, kind: str = "instructor") -> Path:
    """The TP's notebook: the instructor version (with the solutions) or the student version generated from it."""
    return ROOT / kind / lang / f"{CONTRACT[tp][0]}.ipynb"


def generator():
    spec = importlib.util.spec_from_file_location("make_student_versions", ROOT / "instructor" / "make_student_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_sources(path: Path, tag: str | None = None) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and (tag is None or tag in c["metadata"].get("tags", []))]


def functions(source: str) -> list[ast.FunctionDef]:
    return [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]


def test_every_student_version_is_up_to_date_with_its_instructor_version():
    assert list((ROOT / "instructor" / "pt").glob("tp*.ipynb")), "no instructor TP"
    assert generator().out_of_date(ROOT) == [], "run python instructor/make_student_versions.py"


@pytest.mark.parametrize(("tp", "kind"), [(tp, kind) for tp in CONTRACT for kind in ("instructor", "notebooks")])
def test_pt_and_es_have_the_same_code(tp, kind):
    pt, es = notebook_path(tp, "pt", kind), notebook_path(tp, "es", kind)
    assert code_cells(pt) == code_cells(es)
    chapter = ROOT / "notebooks" / "pt" / "00_how_to_use.ipynb"
    assert code_sources(pt)[0] == code_sources(chapter)[0], "cell 0 is the chapters' setup cell"
    for lang, path in (("pt", pt), ("es", es)):
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["metadata"]["cvt_edu"]["lang"] == lang and nb["metadata"]["kernelspec"]["name"] == "python3"
        assert nb["cells"][0]["metadata"]["tags"] == ["remove-cell"]


@pytest.mark.parametrize(("tp", "lang"), [(tp, lang) for tp in CONTRACT for lang in LANGS])
def test_student_answer_cells_hold_no_solution(tp, lang):
    answers = code_sources(notebook_path(tp, lang, "notebooks"), "answer")
    assert answers
    for source in answers:
        assert "### BEGIN SOLUTION" not in source and "### END SOLUTION" not in source
        for fn in functions(source):
            body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
            assert ast.get_docstring(fn), f"{fn.name}: the docstring with the shapes is given"
            assert [ast.unparse(node) for node in body] == ["raise NotImplementedError"], f"{fn.name} holds code"
    for source in code_sources(notebook_path(tp, lang, "instructor"), "answer"):
        markers = [line.strip() for line in source.splitlines() if line.strip().startswith("### ")]
        # every instructor answer has a solution for the generator to strip, one region per function
        assert markers == ["### BEGIN SOLUTION", "### END SOLUTION"] * len(functions(source)), source[:80]


@pytest.mark.parametrize(("tp", "lang", "kind"), VERSIONS)
def test_every_question_has_one_answer_function_and_one_check_cell_after_it(tp, lang, kind):
    path = notebook_path(tp, lang, kind)
    questions = CONTRACT[tp][1]
    answered = {fn.name: [a.arg for a in fn.args.args] for s in code_sources(path, "answer") for fn in functions(s)}
    defined = [fn.name for s in code_sources(path, "answer") for fn in functions(s)]
    assert sorted(defined) == sorted(questions), "exactly one answer function per question, nothing else"
    assert {name: tuple(args) for name, args in answered.items()} == questions, "the contract's signatures"
    code = code_sources(path)
    import_at = next(i for i, s in enumerate(code) if "from cvt_edu.tp import check" in s)
    for name in questions:
        checks = [i for i, s in enumerate(code) if s.strip() == f'check("{name}", {name})']
        answer_at = next(i for i, s in enumerate(code) if name in {fn.name for fn in functions(s)})
        assert len(checks) == 1 and import_at < answer_at < checks[0], name


def test_generator_replaces_solutions_and_refuses_unpaired_markers():
    make = generator()
    source = "def f(x):\n    # hint\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
    assert make.strip_solutions(source) == "def f(x):\n    # hint\n    raise NotImplementedError"
    for bad, says in [("    ### BEGIN SOLUTION\n    return 1\n", "without a '### END SOLUTION'"),
                      ("    return 1\n    ### END SOLUTION\n", "without a '### BEGIN SOLUTION'"),
                      ("    ### BEGIN SOLUTION\n    return 1\n### END SOLUTION\n", "not indented like")]:
        with pytest.raises(ValueError, match=says):
            make.strip_solutions(bad, "instructor/pt/tp9_x.ipynb, cell 3")


def _instructor(tmp_path: Path, answer: str) -> None:
    for lang in LANGS:
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell(answer, metadata={"tags": ["answer"]}),
            nbformat.v4.new_code_cell('check("f", f)', outputs=[nbformat.v4.new_output("stream", text="ok\n")]),
            nbformat.v4.new_code_cell("print(1)"),
            nbformat.v4.new_markdown_cell("only for the instructor", metadata={"tags": ["solution-only"]}),
        ])
        (tmp_path / "instructor" / lang).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, tmp_path / "instructor" / lang / "tp9_x.ipynb")


def test_generator_writes_once_checks_and_leaves_everything_as_it_was_on_a_malformed_notebook(tmp_path, capsys):
    make = generator()
    _instructor(tmp_path, "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION")
    assert make.main(["--check", "--root", str(tmp_path)]) == 1
    assert "out of date: notebooks/pt/tp9_x.ipynb" in capsys.readouterr().out
    assert make.main(["--root", str(tmp_path)]) == 0
    student = nbformat.read(tmp_path / "notebooks" / "es" / "tp9_x.ipynb", as_version=4)
    assert [c.cell_type for c in student.cells] == ["code", "code", "code"]  # the solution-only cell dropped
    assert student.cells[0].source == "def f(x):\n    raise NotImplementedError"
    assert student.cells[1].outputs == [] and student.cells[1].metadata.tags == ["raises-exception"]
    assert "tags" not in student.cells[2].metadata  # a cell that does not use the answers is left alone
    before = {p: p.read_bytes() for p in (tmp_path / "notebooks").rglob("*") if p.is_file()}
    assert make.write_all(tmp_path) == [] and make.main(["--check", "--root", str(tmp_path)]) == 0  # idempotent

    _instructor(tmp_path, "def f(x):\n    ### BEGIN SOLUTION\n    return x\n")  # the END marker forgotten
    assert make.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_student_versions: error: instructor/pt/tp9_x.ipynb, cell 0: line 2:") and err.count("\n") == 1
    assert {p: p.read_bytes() for p in (tmp_path / "notebooks").rglob("*") if p.is_file()} == before  # nothing written, no temp file


def test_the_contract_matches_the_grader():
    from cvt_edu import tp

    assert {n: (a.name, tuple(a.questions)) for n, a in tp.TPS.items()} == {n: (name, tuple(q)) for n, (name, q) in CONTRACT.items()}


@pytest.mark.parametrize("tp", sorted(CONTRACT))
def test_the_grader_gives_the_instructor_version_full_marks_and_the_student_version_none(tp, tmp_path):
    """The shipped notebooks through the real grader (hidden cases, a child process each): the solutions score
    every point, the untouched student version scores none and is told each function is not implemented yet."""
    from cvt_edu.tp import TPS, grade

    rows = grade(tp, [notebook_path(tp, "pt"), notebook_path(tp, "es", "notebooks")], tmp_path / "grades.csv",
                 time_limit=60, quick=True, seed=11)
    solved, untouched = rows
    assert solved["problems"] == [] and sum(solved["points"].values()) == TPS[tp].max_points, solved
    assert untouched["lang"] == "es" and sum(untouched["points"].values()) == 0, untouched
    assert set(untouched["messages"]) == set(CONTRACT[tp][1])
    assert all("todavía no implementada" in m for m in untouched["messages"].values()), untouched["messages"]


# The chapters each TP builds on (the instructors' guide's table): their last cell links the TP.
CHAPTERS_OF = {1: ("01", "02"), 2: ("03", "04"), 3: ("06",), 4: ("07", "08")}


@pytest.mark.parametrize("lang", LANGS)
def test_every_chapter_links_the_tp_that_practises_it(lang):
    for tp, chapters in CHAPTERS_OF.items():
        for number in chapters:
            (path,) = (ROOT / "notebooks" / lang).glob(f"{number}_*.ipynb")
            last = nbformat.read(path, as_version=4).cells[-1]
            assert last.cell_type == "markdown" and f"]({CONTRACT[tp][0]}.ipynb)" in last.source, path.name
