"""One line per config key, for ``hrm-train keys`` (a test checks every key has one).

Keys other helpers add without a line here are still listed, marked "(no description yet)".
"""
from __future__ import annotations

from typing import Any

import yaml

DESCRIPTIONS: dict[str, str] = {
    "arch.H_cycles": "high-level module updates per segment (TRM: cycles, all but the last without gradient)",
    "arch.H_layers": "transformer blocks in the high-level module (ignored by TRM)",
    "arch.L_cycles": "low-level module updates per high-level update (TRM: latent updates per cycle)",
    "arch.L_layers": "transformer blocks in the low-level module (TRM: in its one network)",
    "arch.name": "hrm_v1 (HRM) or trm (Tiny Recursive Models); the references' own names are accepted",
    "arch.mlp_t": "TRM only: an MLP across positions instead of attention (its Sudoku MLP variant)",
    "arch.puzzle_emb_len": "TRM only: positions of the puzzle-embedding prefix (0: ceil(puzzle_emb_ndim / hidden_size))",
    "arch.no_ACT_continue": "TRM only: halt when q_halt > 0, with no continue target (false: HRM's Q-learning target)",
    "arch.expansion": "MLP width as a multiple of hidden_size",
    "arch.forward_dtype": "compute dtype (null: bfloat16 on CUDA, float32 elsewhere)",
    "arch.halt_exploration_prob": "chance a training row is forced to run a random minimum of segments",
    "arch.halt_max_steps": "most ACT segments per example (evaluation always runs this many)",
    "arch.hidden_size": "model width",
    "arch.loss.loss_type": "token loss: stablemax_cross_entropy (the paper's) or softmax_cross_entropy",
    "arch.num_heads": "attention heads (must divide hidden_size)",
    "arch.pos_encodings": "rope or learned position encodings (TRM also: none)",
    "arch.puzzle_emb_ndim": "width of the learned per-identifier embedding (0: none)",
    "arch.rms_norm_eps": "RMSNorm epsilon",
    "arch.rope_theta": "RoPE base",
    "accumulate_votes": "ARC score: count the votes of every evaluation so far (TRM's); null: the dataset's choice",
    "beta1": "AdamATan2 beta1",
    "beta2": "AdamATan2 beta2",
    "checkpoint_every_eval": "write a checkpoint after every evaluation (the last one always)",
    "checkpoint_every_minutes": "also write a checkpoint after the step that passes this much wall time (0: off)",
    "checkpoint_every_steps": "also write a checkpoint every N optimizer steps (0: off)",
    "compile": "torch.compile the model (null: on for CUDA, off elsewhere)",
    "cpu_fit_hours": "CPU, no epochs given: choose epochs and eval_interval for a run of about this many hours",
    "cpu_max_hours": "CPU: refuse to start a run estimated to take longer (null: never refuse)",
    "cpu_threads": "torch threads on CPU (null: the cores not busy when the run starts)",
    "debug_nan_at_step": "tests only: make the loss NaN at this step",
    "debug_sigkill_at_step": "tests only: SIGKILL the run right after this step",
    "device": "auto, cpu, cuda or mps",
    "data_paths": "several datasets trained as one, identifiers offset (hrm-train A B sets it)",
    "ema": "keep an exponential moving average of the weights and evaluate with it",
    "freeze_weights": "train the puzzle embeddings only (TRM's option)",
    "min_eval_interval": "evaluate only from this iteration on (TRM's; the last always evaluates)",
    "ema_rate": "EMA decay per step",
    "epochs": "epochs to train (one epoch = one random puzzle per group; null on a CPU: fitted to cpu_fit_hours)",
    "eval_batch_size": "rows per evaluation batch (null: global_batch_size)",
    "eval_interval": "epochs between evaluations; must divide epochs (null: evaluate once, at the end)",
    "force": "accept a checkpoint made on a dataset with another fingerprint",
    "global_batch_size": "examples per optimizer step, all ranks together",
    "init_from": "weights file (ours or the reference's step_N) to start from",
    "keep_last": "checkpoints kept (plus the best by exact accuracy); 0: keep all",
    "log_every": "optimizer steps between train lines in metrics.jsonl",
    "lr": "AdamATan2 base learning rate",
    "lr_min_ratio": "cosine floor as a fraction of lr (1.0: constant after warmup)",
    "lr_warmup_examples": "warmup in examples, converted to optimizer steps (excludes lr_warmup_steps)",
    "lr_warmup_steps": "linear warmup in optimizer steps (HRM's meaning)",
    "num_workers": "background loader threads (0: load in the training loop)",
    "prefetch": "batches the loader queues ahead",
    "preset": "paper (the reference's 27M model) or cpu-small; applied under everything else you set",
    "progress": "progress bars for training and evaluation",
    "puzzle_emb_lr": "sign-SGD learning rate of the puzzle embedding",
    "puzzle_emb_weight_decay": "weight decay of the puzzle embedding",
    "run_name": "run folder name under runs_dir (null: <dataset>-<timestamp>)",
    "runs_dir": "folder that holds run folders",
    "seed": "seed of the weights, the sampler and ACT exploration",
    "weight_decay": "AdamATan2 decoupled weight decay",
}


def key_lines(table: list[tuple[str, Any]]) -> list[str]:
    """``key: value  # description``: each value as YAML writes it, so it can be pasted into a
    --config file (or given as key=value)."""
    out = []
    width = max((len(k) for k, _ in table), default=0)
    for k, v in table:
        value = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
        if value.endswith("\n..."):
            value = value[:-4].strip()
        value = value.removesuffix("...").strip()
        text = f"{k}: {value}"
        out.append(f"{text:<{width + 28}} # {DESCRIPTIONS.get(k, '(no description yet)')}")
    return out
