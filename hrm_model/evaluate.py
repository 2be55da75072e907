"""Evaluation as the reference's ``evaluate``: every test example once, each batch run for ACT
segments until every row has halted (``halt_max_steps`` in eval mode), metrics summed per set
and divided by the number of counted rows.

The last batch is padded to a full batch (pad inputs, -100 labels, blank identifier); padded
rows have no labels, so the loss head leaves them out of ``count`` and every other metric, and
their predictions are cut off before saving. q_halt_loss is recomputed over labelled rows only
(the loss head, like the reference, sums it over every row, padding included).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from hrm_data.format import Split

import torch.nn.functional as F

from .data import IGNORE_LABEL_ID, eval_loader, to_device

@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, *, global_batch_size: int, device: torch.device,
             rank: int = 0, world_size: int = 1, save_preds: bool = False, per_example: dict | None = None,
             progress: bool = False
             ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Returns ({set: {metric: value, "count": n}}, {set: preds (N, S) int}) (preds on rank 0 only, if asked).

    With ``save_preds`` and a dict ``per_example``, also fills ``per_example[set]`` with (N,) arrays in
    example order: ``steps`` (ACT segments run), ``halt_step`` (the first segment whose q_halt >
    q_continue: what ACT halting would use; ``steps`` if never) and ``q_halt`` (last segment's logit).
    ``progress``: a tqdm bar over the batches (on stderr; evaluation of a large test split takes minutes).
    """
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {}
    all_preds: dict[str, np.ndarray] = {}
    try:
        for set_name in split.metadata.sets:
            sums: torch.Tensor | None = None
            keys: list[str] = []
            rows_out, preds_out, act_out = [], [], []
            n_set = split.set(set_name).num_examples
            batches = eval_loader(split, set_name, global_batch_size, rank, world_size)
            if progress:
                from tqdm import tqdm
                batches = tqdm(batches, total=-(-n_set // global_batch_size), unit="batch", leave=False,
                               desc=f"evaluating {set_name} ({n_set} examples)", file=sys.stderr, mininterval=0.5)
            for rows, batch, n_local, _ in batches:
                batch = to_device(batch, device)
                with torch.device(device):
                    carry = model.initial_carry(batch)
                segment, halt_step = 0, None
                while True:
                    carry, _, metrics, outputs, all_halted = model(carry=carry, batch=batch, return_keys=("preds",))
                    segment += 1
                    if per_example is not None:
                        wants = outputs["q_halt_logits"] > outputs["q_continue_logits"]
                        halt_step = torch.where(wants, segment, 0) if halt_step is None else \
                            torch.where((halt_step == 0) & wants, segment, halt_step)
                    if bool(all_halted):
                        break
                metrics = dict(metrics)
                metrics["q_halt_loss"] = _q_halt_loss_without_padding(batch["labels"], outputs)
                if sums is None:
                    keys = sorted(metrics)
                    sums = torch.zeros(len(keys), dtype=torch.float64, device=device)
                sums += torch.stack([metrics[k].to(torch.float64) for k in keys])
                if save_preds:
                    rows_out.append(rows)
                    preds_out.append(outputs["preds"][:n_local].cpu().numpy())  # padding rows cut off
                    if per_example is not None:
                        steps = carry.steps[:n_local]
                        act_out.append(torch.stack([steps.float(), torch.where(halt_step[:n_local] == 0, steps, halt_step[:n_local]).float(),
                                                    outputs["q_halt_logits"][:n_local].float()], 1).cpu().numpy())
            if sums is None:
                continue
            if world_size > 1:
                dist.all_reduce(sums)
            values = sums.cpu().numpy()
            m = dict(zip(keys, values.tolist()))
            count = m.pop("count")
            results[set_name] = {k: v / max(count, 1.0) for k, v in m.items()}
            results[set_name]["count"] = int(count)
            if save_preds:
                rows_cat = np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64)
                preds_cat = (np.concatenate(preds_out) if preds_out
                             else np.zeros((0, split.metadata.seq_len), np.int64))
                act_cat = np.concatenate(act_out) if act_out else np.zeros((len(rows_cat), 3), np.float32)
                if world_size > 1:
                    gathered: list[Any] = [None] * world_size
                    dist.all_gather_object(gathered, (rows_cat, preds_cat, act_cat))
                    rows_cat = np.concatenate([g[0] for g in gathered])
                    preds_cat = np.concatenate([g[1] for g in gathered])
                    act_cat = np.concatenate([g[2] for g in gathered])
                order = np.argsort(rows_cat, kind="stable")
                all_preds[set_name] = preds_cat[order].astype(np.int32)
                if per_example is not None:
                    act = act_cat[order]
                    per_example[set_name] = {"steps": act[:, 0].astype(np.int32), "halt_step": act[:, 1].astype(np.int32),
                                             "q_halt": act[:, 2].astype(np.float32)}
    finally:
        model.train(was_training)
    return results, all_preds


def _q_halt_loss_without_padding(labels: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss head sums the halt BCE over every row; padded rows (no labels) must not count.

    (The reference's evaluate includes its padding rows in q_halt_loss; every other metric
    already skips rows without labels.)
    """
    mask = labels != IGNORE_LABEL_ID
    rows = mask.any(-1)
    correct = (mask & (outputs["preds"] == labels)).sum(-1) == mask.sum(-1)
    q = outputs["q_halt_logits"].to(torch.float32)
    return F.binary_cross_entropy_with_logits(q[rows], correct[rows].to(torch.float32), reduction="sum")


def task_score(dataset, set_name: str, preds: np.ndarray, **extra: Any) -> tuple[dict[str, float] | None, str | None]:
    """The dataset builder's own metric (``Builder.score``), if it has one; (scores, note).

    ``extra`` (q_halt, evaluation, state, out_dir) goes to the builder only for the keywords its
    ``score`` accepts, so three-argument plugins keep working."""
    builder_name = dataset.test.metadata.provenance.get("builder")
    if not builder_name:
        return None, None
    try:
        from hrm_data import registry
        builder = registry.get(builder_name)
    except Exception as e:
        return None, f"task metric skipped: builder {builder_name!r} not available ({e})"
    if builder.score is None:
        return None, None
    try:
        import inspect
        params = inspect.signature(builder.score).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kw = {k: v for k, v in extra.items() if v is not None and (takes_all or k in params)}
        out = builder.score(dataset, "test", preds, **kw)
    except Exception as e:  # a plugin's metric must never cost the user their evaluation
        return None, f"task metric skipped: {builder_name}.score failed ({type(e).__name__}: {e})"
    # numbers as numbers (int stays int: a count), None as None (a metric that does not apply: "n/a")
    return {k: (None if v is None else int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                else float(v))
            for k, v in out.items() if v is None or isinstance(v, (int, float, np.number))}, None


def attach_task_scores(dataset, results: dict[str, dict], preds: dict[str, np.ndarray],
                       echo: Callable[[str], None], per_example: dict | None = None, **extra: Any) -> None:
    """Put the builder's task metric into ``results[set]["task"]`` for every set with predictions
    (single-set test splits: the metric scores a split's examples in order)."""
    if len(dataset.test.metadata.sets) != 1:
        return
    for set_name, m in results.items():
        if set_name in preds:
            kw = dict(extra)
            kw["q_halt"] = (per_example or {}).get(set_name, {}).get("q_halt")   # evaluate(per_example=...)
            scores, note = task_score(dataset, set_name, preds[set_name], **kw)
            if scores:
                m["task"] = scores
            if note:
                echo(f"note: {note}")


def scores_every_eval(dataset) -> bool:
    """Builders whose metric is the point of every evaluation (ARC's pass@K) set
    ``score_every_eval``; the trainer then scores each evaluation whatever the test size."""
    name = dataset.test.metadata.provenance.get("builder")
    try:
        from hrm_data import registry
        return bool(name) and bool(getattr(registry.get(name), "score_every_eval", False))
    except Exception:  # noqa: BLE001
        return False


def summary_line(m: dict) -> str:
    """One evaluation's numbers for the console (the same line in training and --eval-only)."""
    return (f"n={m['count']} exact_accuracy {m.get('exact_accuracy', 0):.4f} (whole answers right) "
            f"accuracy {m.get('accuracy', 0):.4f} (cells right) q_halt_accuracy {m.get('q_halt_accuracy', 0):.4f} "
            f"steps {m.get('steps', 0):.2f} lm_loss {m.get('lm_loss', 0):.4f}" + task_words(m.get("task", {})))


def task_words(task: dict) -> str:
    """The builder's metric for the console: shares with 4 decimals, counts as integers, a metric
    that does not apply (None, e.g. cost_excess when no route is valid) as n/a, never as 0."""
    if not task:
        return ""
    parts = [f"{k} n/a" if v is None else f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4f}"
             for k, v in task.items()]
    return "; task: " + " ".join(parts)

