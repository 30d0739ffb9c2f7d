"""Downstream evaluation of a trained model through lm-eval: :func:`bench.downstream.runner.run_downstream`.

:mod:`.adapter` presents any causal ``nn.Module`` to lm-eval, :mod:`.tasks` defines the built-in tasks of the
synthetic corpus (offline, for the ``tiny`` workload), :mod:`.runner` runs a workload's task list and turns lm-eval's
results into result-file records, :mod:`.saved` re-evaluates saved runs (``bench eval``), and
``.lm_eval_model`` (with the hook module ``pretrain_bench_lm_eval``) make a saved run lm-eval's ``bench`` model
(``lm_eval --model bench --model_args result=PATH``). ``python -m bench.downstream TASK ...`` downloads lm-eval
tasks' datasets once, so that evaluation can run offline later.

Default tasks for the FineWeb-Edu workloads (20M-160M parameters)
-----------------------------------------------------------------
A downstream task only helps a leaderboard at this scale if models of this size score clearly above chance, so that
differences between submissions are signal rather than noise. Reference points are lm-eval zero-shot scores of
Pythia-70M (step 143000, the final checkpoint) and Pythia-160M (step 123000) from EleutherAI/pythia
``evals/pythia-v1/pythia-{70m,160m}/zero-shot/``, trained on the Pile, and of GPT-2 124M (lm-eval numbers quoted in
karpathy/build-nanogpt ``hellaswag.py``):

==============  ==========  ======  ==========  ===========  ======================================  =========
task            metric      chance  Pythia-70M  Pythia-160M  GPT-2 124M                              items
==============  ==========  ======  ==========  ===========  ======================================  =========
lambada_openai  acc         ~0      0.185       0.331        --                                      5,153
sciq            acc         0.25    0.601       0.735        --                                      1,000
piqa            acc         0.50    0.595       0.618        --                                      1,838
arc_easy        acc         0.25    0.374       0.431        --                                      2,376
hellaswag       acc_norm    0.25    --          --           0.311 (acc 0.289)                       10,042
blimp           acc         0.50    --          --           --                                      67,000
==============  ==========  ======  ==========  ===========  ======================================  =========

Recommended: ``downstream: [lambada_openai, sciq, piqa, arc_easy, hellaswag, blimp]`` (all zero-shot).

* ``lambada_openai`` (last-word prediction) and ``sciq`` move the most between 70M and 160M: the best separators.
* ``piqa`` and ``arc_easy`` are 9-12 points above chance at 70M and still rising.
* ``hellaswag`` is only a few points above chance at this size, but with 10k items its standard error is ~0.005,
  and it is the task most small-model papers report (acc_norm, as they do).
* ``blimp`` (67 grammatical-minimal-pair sets, reported as their mean) measures grammar, which small models learn
  first; even n-gram models are well above chance (Warstadt et al. 2020, arXiv:1912.00582), so it separates weak
  models that all sit near chance on the knowledge tasks. It is the real-data sibling of ``synthetic_agreement``.
* Left out: ``winogrande`` (0.528 / 0.506 for Pythia-70M / 160M: chance), ``arc_challenge`` (acc 0.18, below
  chance), MMLU (chance below ~1B parameters), and generation tasks (near zero at this scale).

Cost: the six tasks score about 200k sequences (items times choices), most of them short; all are zero-shot, so
the scores do not depend on few-shot sampling. Their datasets come from the Hugging Face Hub: fetch them once
with ``python -m bench.downstream lambada_openai sciq piqa arc_easy hellaswag blimp`` before offline runs.
"""
