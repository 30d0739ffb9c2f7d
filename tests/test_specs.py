"""Workload and submission specs: the repo's own files load, and every kind of mistake names file and field."""

from pathlib import Path

import pytest
import yaml

from bench.errors import BenchError, SpecError
from bench.spec.loading import load_submission, load_workload, workload_files, workload_path
from bench.spec.submission import SubmissionManifest
from bench.spec.workload import WorkloadSpec

from conftest import ROOT

REQUIRED_WORKLOADS = {"tiny", "20m-10gb", "40m-10gb", "160m-10gb", "40m-100gb", "160m-100gb", "swahili-20m"}


def test_repo_workloads_load():
    names = {path.stem for path in workload_files(ROOT)}
    assert REQUIRED_WORKLOADS <= names
    for path in workload_files(ROOT):
        spec = load_workload(path)
        assert spec.name == path.stem


def test_tiny_is_the_offline_cpu_default():
    spec = load_workload(workload_path("tiny", ROOT))
    assert spec.data.source.kind == "synthetic"
    assert spec.budget.hardware == "cpu-2" and spec.budget.gpus == 0 and spec.budget.cpus == 2
    assert spec.budget.wall_clock == 60.0
    assert spec.model.max_params == 2_000_000


def test_gpu_workloads_name_real_data_and_hardware():
    spec = load_workload(workload_path("40m-10gb", ROOT))
    assert spec.data.source.path == "HuggingFaceFW/fineweb-edu"
    assert spec.data.train_bytes == 10 * 10**9
    assert spec.budget.gpus == 1 and spec.budget.accelerator == "H100-SXM"
    assert spec.notes and "tokens/s" in spec.notes
    assert load_workload(workload_path("160m-100gb", ROOT)).budget.gpus == 8


def test_content_hash_is_stable_and_sensitive():
    spec = load_workload(workload_path("tiny", ROOT))
    same = WorkloadSpec.model_validate(spec.model_dump())
    assert same.content_hash() == spec.content_hash()
    other = spec.model_copy(update={"seeds": spec.seeds + 1})
    assert other.content_hash() != spec.content_hash()


def _broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((ROOT / "workloads" / "tiny.yaml").read_text())
    edit(data)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_workload(path)
    assert all(str(path) in line for line in str(info.value).splitlines())
    return info.value.problems


def test_wrong_unit_names_field_and_value(tmp_path):
    path = _broken(tmp_path, lambda d: d["budget"].update(wall_clock="45 minutes"))
    [problem] = _problems(path)
    assert problem.startswith("budget.wall_clock:") and "'45 minutes'" in problem and "'45m'" in problem


def test_unknown_field_lists_allowed_fields(tmp_path):
    path = _broken(tmp_path, lambda d: d["budget"].update(wallclock="60s"))
    [problem] = _problems(path)
    assert problem.startswith("budget.wallclock: unknown field")
    assert "wall_clock" in problem and "hardware" in problem


def test_unknown_field_inside_a_union_member(tmp_path):
    path = _broken(tmp_path, lambda d: d["data"]["source"].update(path="x"))
    [problem] = _problems(path)
    assert problem.startswith("data.source.synthetic.path: unknown field") and "seed" in problem


def test_missing_budget_says_what_is_needed(tmp_path):
    def edit(d):
        del d["budget"]["wall_clock"]
    [problem] = _problems(_broken(tmp_path, edit))
    assert problem.startswith("budget:") and "wall_clock, tokens or flops" in problem


def test_negative_size_is_rejected(tmp_path):
    [problem] = _problems(_broken(tmp_path, lambda d: d["data"].update(train_bytes=-5)))
    assert problem.startswith("data.train_bytes:") and "-5" in problem


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    def edit(d):
        d["model"]["max_params"] = "2Q"
        d["tokenizer"] = {"kind": "wordpiece"}
        d["target"]["metric"] = "accuracy"
    problems = _problems(_broken(tmp_path, edit))
    fields = {p.split(":")[0] for p in problems}
    assert {"model.max_params", "tokenizer", "target.metric"} <= fields
    tokenizer = next(p for p in problems if p.startswith("tokenizer:"))
    assert "'byte'" in tokenizer and "'bpe'" in tokenizer and "'file'" in tokenizer


def test_bad_hardware_class(tmp_path):
    [problem] = _problems(_broken(tmp_path, lambda d: d["budget"].update(hardware="H100")))
    assert problem.startswith("budget.hardware:") and "1xH100-SXM" in problem


@pytest.mark.parametrize(
    ("hardware", "suggested"),
    [
        ("1xH1000", "'1xH100-SXM'"),  # a typo
        ("1xh100-sxm", "'1xH100-SXM'?"),  # one spelling per class: results group by it
        ("1xH100", "'1xH100-SXM' or '1xH100-NVL' or '1xH100-PCIe'?"),  # a family, not a SKU: which part?
        ("8xh200", "'8xH200'"),
        ("2xGPU", None),
    ],
)
def test_a_hardware_class_names_a_known_sku(tmp_path, hardware, suggested):
    [problem] = _problems(_broken(tmp_path, lambda d: d["budget"].update(hardware=hardware)))
    assert problem.startswith(f"budget.hardware: unknown hardware class '{hardware}'")
    assert f"did you mean {suggested}" in problem if suggested else "did you mean" not in problem
    assert "H100-SXM, H100-PCIe, H100-NVL, H200" in problem  # the known SKUs are listed


@pytest.mark.parametrize("hardware", ["cpu-2", "1xH100-SXM", "1xH100-PCIe", "1xH100-NVL", "1xH200", "8xH100-SXM"])
def test_sku_classes_validate(tmp_path, hardware):
    spec = load_workload(_broken(tmp_path, lambda d: d["budget"].update(hardware=hardware)))
    assert spec.budget.hardware == hardware


def test_name_must_match_file(tmp_path):
    [problem] = _problems(_broken(tmp_path, lambda d: d.update(name="other")))
    assert problem.startswith("name:") and "'tiny'" in problem


def test_yaml_syntax_error_has_line_number(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nbudget: {wall_clock: 60s\n")
    [problem] = _problems(path)
    assert "line" in problem and "invalid YAML" in problem


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    [problem] = _problems(path)
    assert "mapping" in problem


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(BenchError, match="file not found"):
        load_workload(tmp_path / "nope.yaml")


def test_downstream_short_form():
    spec = load_workload(workload_path("tiny", ROOT))
    assert [(t.task, t.limit) for t in spec.eval.downstream] == [("synthetic_agreement", 200), ("synthetic_cloze", 300)]
    assert all(t.num_fewshot == 0 for t in spec.eval.downstream)
    real = load_workload(workload_path("40m-10gb", ROOT))
    assert [t.task for t in real.eval.downstream][:2] == ["lambada_openai", "sciq"]


MANIFEST = {
    "name": "demo",
    "authors": ["A. Person"],
    "description": "demo",
    "entry_point": "recipe.py:Demo",
    "hyperparameters": {"lr": 3e-3, "n_layer": 4, "norm": "rmsnorm"},
    "search_space": {
        "lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1e-2},
        "n_layer": {"distribution": "int_uniform", "low": 2, "high": 6},
        "norm": {"distribution": "choice", "values": ["layernorm", "rmsnorm"]},
    },
    "workloads": ["tiny"],
}


def test_manifest_search_space_samples_inside_ranges():
    manifest = SubmissionManifest.model_validate(MANIFEST)
    for u in (0.0, 0.3, 0.999):
        assert 1e-4 <= manifest.search_space["lr"].sample(u) <= 1e-2
        assert 2 <= manifest.search_space["n_layer"].sample(u) <= 6
        assert manifest.search_space["norm"].sample(u) in ("layernorm", "rmsnorm")


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(entry_point="recipe:Demo"), "entry_point"),
    (lambda m: m["hyperparameters"].update(lr=0.5), "lr"),
    (lambda m: m["hyperparameters"].pop("n_layer"), "n_layer"),
    (lambda m: m["search_space"]["lr"].update(low=0.0), "log_uniform"),
    (lambda m: m.update(authors=[]), "authors"),
])
def test_manifest_errors(tmp_path, edit, field):
    data = yaml.safe_load(yaml.safe_dump(MANIFEST))
    edit(data)
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "submission.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_submission(folder)
    assert str(folder / "submission.yaml") in str(info.value) and field in str(info.value)
