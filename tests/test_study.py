"""Studies: spec checks, expansion into derived workloads, resumability, scaling fits, comparisons and the report.

Fits and comparisons run on synthetic results whose truth is known (losses drawn from a given scaling law, curves
with a given offset); one slow test runs a two-trial study through the real scheduler and runs it again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, published_project
from scipy.optimize import minimize_scalar

from bench.errors import BenchError, SpecError
from bench.results.store import load_results, write_result
from bench.tune import tuned_configuration
from bench.spec.loading import load_workload
from bench.results.schema import EvalPoint, ParamCounts, RunResult, TrialStatus
from bench.study.paired import compare, loss_at_equal_time, paired_effect
from bench.study.expand import Cell, Plan, derive_workload, expand, plan_study
from bench.study.fit import ScalingLaw, fit_scaling_law
from bench.study.report import report_study, write_report
from bench.study.run import pending, run_study, study_dir
from bench.study.spec import ComparisonSpec, load_study

CHINCHILLA = ScalingLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

RECIPE = "from bench.train.recipes import GPTRecipe\n\n\nclass Gpt(GPTRecipe):\n    pass\n"


def _submission(root: Path, name: str, **hparams) -> None:
    folder = root / "submissions" / name
    folder.mkdir(parents=True)
    (folder / "recipe.py").write_text(RECIPE)
    defaults = {
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "positions": "learned",
        "lr": 0.003,
        "batch_size": 8,
        "seq_len": 64,
        "optimizer": "adamw",
        "schedule": "cosine",
        "warmup": 0.05,
    }
    manifest = {
        "name": name,
        "authors": ["tests"],
        "description": name,
        "entry_point": "recipe.py:Gpt",
        "hyperparameters": {**defaults, **hparams},
        "workloads": ["mini"],
    }
    (folder / "submission.yaml").write_text(yaml.safe_dump(manifest))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a small CPU workload and two GPT submissions that differ in their position encoding."""
    root = tmp_path / "project"
    (root / "workloads").mkdir(parents=True)
    data = yaml.safe_load((ROOT / "workloads" / "tiny.yaml").read_text())
    data.update(name="mini", seeds=1)
    data["data"].update(train_bytes="1MB", val_bytes="20KB")
    data["model"]["max_params"] = "200k"
    data["budget"].update(wall_clock="2s", overrun_grace="2s", hardware="cpu-1")
    data["eval"].update(every="1s", seq_len=64, tokens="4k", downstream=[])
    (root / "workloads" / "mini.yaml").write_text(yaml.safe_dump(data))
    _submission(root, "learned")
    _submission(root, "rotary", positions="rotary")
    return root


def _study(root: Path, **fields) -> Path:
    study = {
        "name": "grid",
        "description": "test study",
        "question": "does it work?",
        "workload": "mini",
        "submissions": ["learned", "rotary"],
        "seeds": 2,
        "sizes": {"small": {"n_layer": 1, "n_embd": 16}, "big": {"n_layer": 4, "n_embd": 64, "n_head": 4}},
        "budgets": {"wall_clock": ["2s", "4s"]},
    }
    study.update(fields)
    path = root / "studies" / f"{study['name']}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _problems(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert all(p for p in info.value.problems)
    return str(info.value)


# --- spec -----------------------------------------------------------------------------------------------------


def test_repo_studies_load_and_expand():
    paths = sorted((ROOT / "studies").glob("*.yaml"))
    assert {"tiny-scaling", "tiny-positions", "tiny-optimizers", "tiny-data-vs-size", "fineweb-scaling"} <= {
        p.stem for p in paths
    }
    for path in paths:
        study = load_study(path)
        plan = plan_study(study, ROOT)
        assert len(plan.requests()) == len(study.sizes) * len(study.submissions) * study.seeds * len(
            {(c.wall_clock, c.train_bytes) for c in plan.cells}
        )
        assert all(c.params <= c.workload.model.max_params for c in plan.cells)


def test_tiny_scaling_raises_the_limit_for_its_largest_model():
    plan = plan_study(load_study(ROOT / "studies" / "tiny-scaling.yaml"), ROOT)
    largest = max(c.params for c in plan.cells)
    assert plan.limit_raised and largest > plan.base.model.max_params
    assert largest <= plan.max_params < largest * 1.01
    assert {c.workload.name for c in plan.cells} == {"tiny.t15s.p2.76m", "tiny.t25s.p2.76m", "tiny.t40s.p2.76m"}
    assert [c.held_out for c in plan.cells].count(True) == 1


def test_a_tuned_study_trains_each_submission_s_tuned_configuration_under_its_sizes(tmp_path: Path):
    """``tuned: true`` on the results published on 2026-12-02 (a frozen copy as the project's leaderboard/results):
    adamw-baseline's declared best (its re-run sweep on tiny) under every size's shape, and the report names the
    sweep."""
    project = published_project(tmp_path / "project")
    study = load_study(ROOT / "studies" / "tiny-scaling.yaml").model_copy(update={"tuned": True})
    plan = plan_study(study, project)
    tuned = tuned_configuration(project / "leaderboard" / "results" / "tiny" / "adamw-baseline")
    assert tuned is not None and plan.tuned == {"adamw-baseline": tuned}
    assert {"lr", "warmup"} <= set(tuned.chosen)
    for cell in plan.cells:
        assert cell.overrides == {**tuned.chosen, **study.sizes[cell.size]}
        assert cell.hyperparameters["lr"] == tuned.chosen["lr"]
    text = write_report(study, [], tmp_path, root=project, n_bootstrap=10).read_text()
    assert f"adamw-baseline: sweep `{tuned.sweep_id}`" in text


def test_a_tuned_study_needs_a_re_run_sweep_of_each_submission(project: Path):
    with pytest.raises(BenchError, match=r"tuned: \S+ has no re-run sweep on mini"):
        plan_study(load_study(_study(project, tuned=True)), project)


def test_spec_errors_name_file_and_field(project: Path):
    assert "grid.yaml: sizess: unknown field" in _problems(_study(project, sizess={}))
    text = _problems(_study(project, fit=True, hold_out=[{"size": "huge"}]))
    assert "hold_out: [0].size: 'huge' is not a size of the study (sizes: small, big)" in text
    assert "held-out points only make sense with fit: true" in _problems(_study(project, hold_out=[{"size": "big"}]))
    assert "every grid point is held out" in _problems(
        _study(project, fit=True, hold_out=[{"wall_clock": "2s"}, {"wall_clock": "4s"}])
    )
    assert "at least two sizes" in _problems(_study(project, fit=True, sizes={"one": {}}))
    assert "budgets.wall_clock[0]: expected a duration" in _problems(
        _study(project, budgets={"wall_clock": ["2 secs"]})
    )
    assert "[0].candidate: 'lion' is not a submission" in _problems(
        _study(project, compare=[{"by": "submission", "baseline": "learned", "candidate": "lion"}])
    )
    path = _study(project)
    path.rename(path.with_name("other.yaml"))
    assert "name: must equal the file name 'other'" in _problems(path.with_name("other.yaml"))


def test_default_comparisons_are_each_submission_against_the_first(project: Path):
    study = load_study(_study(project))
    assert study.comparisons == [ComparisonSpec(by="submission", baseline="learned", candidate="rotary")]


# --- expansion ------------------------------------------------------------------------------------------------


def test_expand_makes_every_trial_of_the_grid(project: Path):
    study = load_study(_study(project, fit=True, hold_out=[{"size": "big", "wall_clock": "4s"}]))
    requests = expand(study, project)
    assert len(requests) == 2 * 2 * 2 * 2  # submissions x sizes x budgets x seeds
    assert len({r.run_id for r in requests}) == len(requests)
    names = {r.workload.name for r in requests}
    assert names == {"mini.t2s.p218k", "mini.t4s.p218k"}  # the big size does not fit the 200k limit: raised
    budgets = {r.workload.name: r.workload.budget.wall_clock for r in requests}
    assert budgets == {"mini.t2s.p218k": 2.0, "mini.t4s.p218k": 4.0}
    assert {tuple(sorted(r.overrides.items())) for r in requests} == {
        (("n_embd", 16), ("n_layer", 1)),
        (("n_embd", 64), ("n_head", 4), ("n_layer", 4)),
    }
    assert all(r.seed in (0, 1) for r in requests)
    plan = plan_study(study, project)
    assert [c.held_out for c in plan.cells].count(True) == 2  # one per submission
    assert all(c.workload.data == plan.base.data and c.workload.target == plan.base.target for c in plan.cells)


def test_derived_workload_is_the_base_when_nothing_changes(project: Path):
    base = load_workload(project / "workloads" / "mini.yaml")
    assert derive_workload(base, None, None, base.model.max_params) is base
    derived = derive_workload(base, None, 512_000, base.model.max_params)
    assert derived.name == "mini.d512kb" and derived.data.train_bytes == 512_000
    assert "Derived from mini: train_bytes 512KB." in derived.description


def test_derived_workloads_drop_downstream_tasks_unless_the_study_runs_them():
    tiny = load_workload(ROOT / "workloads" / "tiny.yaml")
    assert tiny.eval.downstream
    quiet = derive_workload(tiny, 30.0, None, tiny.model.max_params, downstream=False)
    assert quiet.name == "tiny.t30s" and quiet.eval.downstream == [] and "no downstream tasks" in quiet.description
    assert derive_workload(tiny, 30.0, None, tiny.model.max_params).eval.downstream == tiny.eval.downstream
    plan = plan_study(load_study(ROOT / "studies" / "tiny-positions.yaml"), ROOT)
    assert all(c.workload.eval.downstream == [] for c in plan.cells)


def test_expand_rejects_a_size_with_an_unknown_hyperparameter(project: Path):
    study = load_study(_study(project, sizes={"odd": {"n_layers": 3}}))
    with pytest.raises(BenchError, match=r"sizes\.odd with submission 'learned'.*n_layers: unknown hyperparameter"):
        expand(study, project)


def test_expand_rejects_an_impossible_shape(project: Path):
    study = load_study(_study(project, sizes={"odd": {"n_embd": 30, "n_head": 4}}))
    with pytest.raises(BenchError, match=r"sizes\.odd.*not divisible by n_head=4"):
        expand(study, project)


# --- synthetic results ----------------------------------------------------------------------------------------

_CLOCK = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _result(
    cell: Cell,
    seed: int,
    loss: float,
    tokens: int,
    *,
    ttt: float | None = None,
    end: float = 2.0,
    status: TrialStatus = TrialStatus.ok,
    started: int = 0,
    hyperparameters: dict | None = None,
) -> RunResult:
    """A result of ``cell`` whose curve falls linearly from loss + 1 to ``loss`` over ``end`` training seconds."""
    curve = [
        EvalPoint(step=i, tokens=int(tokens * f), train_seconds=end * f, val_loss=loss + 1 - f, val_bpb=1.0)
        for i, f in enumerate((0.0, 0.5, 1.0))
    ]
    ok = status == TrialStatus.ok
    return RunResult(
        run_id=f"{cell.submission}-{cell.size}-{cell.budget.replace(' ', '')}-s{seed}-{started}",
        status=status,
        reason=None if ok else "crashed",
        workload=cell.workload.name,
        workload_hash=cell.workload.content_hash(),
        submission=cell.submission,
        submission_hash="x" * 64,
        seed=seed,
        hyperparameters=cell.hyperparameters if hyperparameters is None else hyperparameters,
        device="cpu",
        started_at=_CLOCK + timedelta(minutes=started),
        finished_at=_CLOCK + timedelta(minutes=started + 1),
        curve=curve if ok else [],
        final=curve[-1] if ok else None,
        tokens=tokens,
        unique_tokens=tokens,
        time_to_target_s=ttt,
        target_reached=ttt is not None,
        params=ParamCounts(total=cell.params, embedding=0, counted=cell.params, limit=cell.workload.model.max_params),
    )


def _tokens(cell: Cell) -> int:
    """Tokens a run of ``cell`` trained on: proportional to time, smaller models faster."""
    return int(cell.wall_clock * 4e9 / cell.params**0.5)


# --- resumability ---------------------------------------------------------------------------------------------


def test_pending_skips_trials_with_a_successful_result(project: Path, tmp_path: Path):
    path = _study(project)
    study = load_study(path)
    plan = plan_study(study, project)
    out = study_dir(study, tmp_path / "results")
    assert out == tmp_path / "results" / "studies" / "grid"
    first, second, third = plan.cells[:3]
    write_result(_result(first, 0, 3.0, 1000), out)
    # failed before the submission loaded: the result records only the size's overrides
    write_result(_result(second, 0, 3.0, 1000, status=TrialStatus.failed, hyperparameters=second.overrides), out)
    write_result(_result(third, 0, 3.0, 1000, hyperparameters={**third.hyperparameters, "lr": 0.1}), out)
    write_result(_result(third, 1, 3.0, 1000, started=1), out)
    todo = pending(plan, load_results([out]))
    assert len(todo) == len(plan.cells) * 2 - 2  # failed and other-hyperparameter results do not count
    assert (first, 0) not in todo and (third, 1) not in todo and (second, 0) in todo and (third, 0) in todo
    matches, _ = plan.match(load_results([out]))
    assert [m.result.status for m in matches if m.cell is second] == [TrialStatus.failed]
    # a re-run supersedes the failure; after an edit of the grid, the points it kept keep their results
    write_result(_result(second, 0, 2.5, 1000, started=2), out)
    matches, unmatched = plan.match(load_results([out]))
    assert {(m.cell.size, m.seed, m.result.status) for m in matches if m.cell is second} == {
        (second.size, 0, TrialStatus.ok)
    }
    assert len(unmatched) == 1 and unmatched[0].hyperparameters["lr"] == 0.1
    edited = plan_study(load_study(_study(project, budgets={"wall_clock": ["2s", "5s"]})), project)
    assert len(pending(edited, load_results([out]))) == len(edited.cells) * 2 - 2  # the 2 s point still matches


def test_run_study_with_everything_done_runs_nothing(project: Path, tmp_path: Path):
    path = _study(project, seeds=1)
    study = load_study(path)
    plan = plan_study(study, project)
    out = study_dir(study, tmp_path)
    for cell in plan.cells:
        write_result(_result(cell, 0, 3.0, 1000), out)
    before = sorted(out.rglob("*.json"))
    results = run_study(path, tmp_path, root=project)  # would start Ray if anything were pending
    assert len(results) == len(plan.cells) and sorted(out.rglob("*.json")) == before


@pytest.mark.slow
def test_run_study_end_to_end_and_resume(project: Path, tmp_path: Path):
    """Two real trials through Ray; running the study again finds both done and starts nothing."""
    path = _study(
        project,
        submissions=["learned"],
        seeds=1,
        sizes={"small": {"n_layer": 1, "n_embd": 16}, "big": {"n_layer": 2, "n_embd": 32}},
        budgets={"wall_clock": ["2s"]},
    )
    results = run_study(path, tmp_path, root=project, progress=False)
    assert [r.status for r in results] == [TrialStatus.ok, TrialStatus.ok], [r.reason for r in results]
    assert {r.workload for r in results} == {"mini.t2s"} and results[0].params.counted < results[1].params.counted
    files = sorted(study_dir(load_study(path), tmp_path).rglob("*.json"))
    again = run_study(path, tmp_path, root=project, progress=False)
    assert [r.run_id for r in again] == [r.run_id for r in results]
    assert sorted(study_dir(load_study(path), tmp_path).rglob("*.json")) == files


# --- fits -----------------------------------------------------------------------------------------------------


def _grid(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    N, D = np.meshgrid(np.logspace(5, 8, n), np.logspace(7, 10, n))
    return N.ravel(), D.ravel()


def test_fit_recovers_the_law_from_exact_losses():
    N, D = _grid(5)
    fit = fit_scaling_law(N, D, CHINCHILLA.loss(N, D), n_bootstrap=0)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(fit.law, name) == pytest.approx(getattr(CHINCHILLA, name), rel=1e-4), name


def test_fit_recovers_exponents_from_noisy_losses_and_its_intervals_grow_with_noise():
    N, D = _grid(6)
    noise = np.random.default_rng(0).normal(0.0, 1.0, N.size)
    exact = fit_scaling_law(N, D, CHINCHILLA.loss(N, D), n_bootstrap=10)
    assert exact.parameter("alpha").high - exact.parameter("alpha").low < 1e-6  # resampling exact points: no spread
    widths = []
    for sigma in (0.005, 0.02):  # multiplicative noise of 0.5% and 2%
        fit = fit_scaling_law(N, D, CHINCHILLA.loss(N, D) * np.exp(sigma * noise), n_bootstrap=20, seed=1)
        for name in ("alpha", "beta"):
            estimate = fit.parameter(name)
            assert estimate.value == pytest.approx(getattr(CHINCHILLA, name), abs=0.05), (sigma, name)
            assert estimate.low <= estimate.value <= estimate.high
        widths.append(fit.parameter("beta").high - fit.parameter("beta").low)
    assert 0 < widths[0] < widths[1]


def test_huber_loss_shrugs_off_a_diverged_run():
    N, D = _grid(5)
    L = CHINCHILLA.loss(N, D)
    L[7] *= 1.5  # one run far off the law
    fit = fit_scaling_law(N, D, L, n_bootstrap=0)
    assert fit.law.alpha == pytest.approx(CHINCHILLA.alpha, abs=0.01)
    assert fit.law.beta == pytest.approx(CHINCHILLA.beta, abs=0.01)


def test_compute_optimal_split_minimises_loss_at_fixed_compute():
    C = 1e20
    n_opt, d_opt = CHINCHILLA.compute_optimal(C)
    assert 6 * n_opt * d_opt == pytest.approx(C)
    best = minimize_scalar(lambda x: float(CHINCHILLA.loss(10**x, C / (6 * 10**x))), bounds=(5, 12), method="bounded")
    assert math.log10(n_opt) == pytest.approx(best.x, abs=1e-3)
    assert float(CHINCHILLA.frontier(C)) == pytest.approx(best.fun, rel=1e-6)
    # the ratio grows with compute as C^((alpha - beta)/(alpha + beta)); constant when alpha == beta
    ratio = CHINCHILLA.tokens_per_parameter(C * 10) / CHINCHILLA.tokens_per_parameter(C)
    assert ratio == pytest.approx(10 ** ((0.34 - 0.28) / 0.62))
    even = ScalingLaw(E=1.7, A=400.0, B=400.0, alpha=0.3, beta=0.3)
    assert even.tokens_per_parameter(1e18) == pytest.approx(even.tokens_per_parameter(1e22))


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="positive and finite"):
        fit_scaling_law(np.array([1e6, 0.0]), np.array([1e8, 1e8]), np.array([3.0, 3.0]))


# --- comparisons ----------------------------------------------------------------------------------------------


def _plan(project: Path, **fields) -> Plan:
    return plan_study(load_study(_study(project, **fields)), project)


def test_a_real_difference_is_significant_and_a_null_one_is_not(project: Path):
    plan = _plan(project, seeds=3)
    rng = np.random.default_rng(0)
    results = []
    for cell in plan.cells:
        for seed in range(3):
            better = -0.05 if cell.submission == "rotary" else 0.0
            results.append(
                _result(
                    cell,
                    seed,
                    3.0 + better + rng.normal(0, 0.005),
                    1000,
                    ttt=(1.0 if cell.submission == "rotary" else 1.5) * (1 + rng.normal(0, 0.02)),
                )
            )
    matches, _ = plan.match(results)
    result = compare(matches, ComparisonSpec(by="submission", baseline="learned", candidate="rotary"))
    assert result.overall.pairs == 12
    assert result.overall.loss.value == pytest.approx(-0.05, abs=0.01) and result.overall.loss.significant
    assert result.overall.speedup.value == pytest.approx(1.5, rel=0.05) and result.overall.speedup.significant
    assert "0.05" in result.verdict and "lower than learned" in result.verdict and "NOT" not in result.verdict
    assert {r.label for r in result.breakdown} == {"size small", "size big", "budget 2s", "budget 4s"}

    matches, _ = plan.match([_result(m.cell, m.seed, 3.0 + rng.normal(0, 0.01), 1000) for m in matches])
    result = compare(matches, ComparisonSpec(by="submission", baseline="learned", candidate="rotary"))
    assert not result.overall.loss.significant
    assert "NOT significant" in result.verdict and "no speedup is estimated" in result.verdict


def test_sizes_compare_by_budget_and_a_single_pair_is_not_tested(project: Path):
    plan = _plan(project, seeds=1, submissions=["learned"])
    results = [_result(c, 0, 3.0 if c.size == "big" else 3.2, 1000) for c in plan.cells]
    matches, _ = plan.match(results)
    result = compare(matches, ComparisonSpec(by="size", baseline="big", candidate="small"))
    assert result.overall.loss.value == pytest.approx(0.2) and result.overall.pairs == 2
    assert result.overall.loss.significant  # two identical differences: certain
    pair = [m for m in matches if m.cell.wall_clock == 2.0]
    single = compare(pair, ComparisonSpec(by="size", baseline="big", candidate="small"))
    assert single.overall.pairs == 1 and single.overall.loss.p is None
    assert "size small" in single.verdict and "NOT evidence" in single.verdict


def test_loss_at_equal_time_interpolates_at_the_shorter_run(project: Path):
    cell = _plan(project).cells[0]
    short, long = _result(cell, 0, 3.0, 1000, end=2.0), _result(cell, 1, 3.0, 1000, end=4.0)
    t, a, b = loss_at_equal_time(short, long)
    assert (t, a, b) == (2.0, 3.0, 3.5)  # the long run is halfway down its line at 2 s
    assert paired_effect([1.0]).p is None and paired_effect([0.0, 0.0]).p == 1.0


# --- report ---------------------------------------------------------------------------------------------------


def test_report_fits_predicts_held_out_points_and_compares(project: Path, tmp_path: Path):
    sizes = {
        "xs": {"n_layer": 1, "n_embd": 16},
        "s": {"n_layer": 2, "n_embd": 32},
        "m": {"n_layer": 3, "n_embd": 64},
        "l": {"n_layer": 4, "n_embd": 96},
    }
    path = _study(
        project,
        seeds=1,
        sizes=sizes,
        budgets={"wall_clock": ["2s", "4s", "8s"]},
        fit=True,
        hold_out=[{"size": "l", "wall_clock": "8s"}],
    )
    study = load_study(path)
    plan = plan_study(study, project)
    law = ScalingLaw(E=1.5, A=60.0, B=900.0, alpha=0.4, beta=0.45)
    results = [
        _result(c, 0, float(law.loss(c.params, _tokens(c))), _tokens(c), ttt=c.wall_clock / 2) for c in plan.cells
    ]
    results.append(_result(plan.cells[0], 5, 3.0, 1000))  # a seed the study does not have: ignored
    report = write_report(study, results, tmp_path, root=project, n_bootstrap=10)
    assert report == tmp_path / "report.md"
    text = report.read_text()
    assert "**Question.** does it work?" in text
    assert "raised from 200k to 475k parameters" in text
    assert "24 of 24 trials have one (24 ok)" in text and "1 result file(s)" in text
    assert "### learned" in text and "### rotary" in text and "Fitted to 11 runs" in text
    held = [line for line in text.splitlines() if line.startswith("| l / 8s")]
    assert len(held) == 2
    for line in held:  # exact losses from a law of the fitted form: the held-out point is predicted to 0.1%
        relative = float(line.split("|")[-2].strip().rstrip("%"))
        assert abs(relative) < 0.1, line
    assert "tokens per parameter scales as C^-0.059" in text  # (alpha - beta) / (alpha + beta) = -0.05 / 0.85
    for plot in ("loss-vs-params", "loss-vs-compute", "comparisons"):
        assert (tmp_path / "plots" / f"{plot}.svg").stat().st_size > 1000
        assert f"plots/{plot}.svg" in text
    assert "### rotary vs learned" in text


def test_report_study_without_results_says_what_is_missing(project: Path, tmp_path: Path):
    path = _study(project, seeds=1)
    report = report_study(path, tmp_path, root=project)
    assert report == study_dir(load_study(path), tmp_path) / "report.md"
    text = report.read_text()
    assert "0 of 8 trials have one" in text and "Not run yet" in text and "No scored runs yet." in text
    assert "No pair of scored runs of rotary and learned" in text
