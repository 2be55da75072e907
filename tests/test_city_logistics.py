"""city-logistics builder: oracle exactness, well-posedness, determinism, splits, augmentation, domain check."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hrm_data.augment import dihedral_flat
from hrm_data.builder import build
from hrm_data.format import Dataset, write_arrays
from hrm_builders import city_logistics as cl
from hrm_builders import city_oracle as o
from hrm_builders.city_logistics import CityLogistics

SMALL = dict(train_scenarios=12, test_scenarios=6, size=10, min_distance=0)


def _build(tmp_path, name="ds", **opts):
    b = CityLogistics()
    path = build(b, tmp_path / name, {**SMALL, **opts}, progress=False)
    return b, Dataset(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("city"), num_aug=2)


# ----------------------------------------------------------------------------- oracle vs brute force

def _brute(grid: np.ndarray, shape, vehicle):
    """All simple paths start -> end by DFS: (min cost, number of min-cost paths, union of their cells)."""
    g = grid.reshape(-1)
    s, t, _ = o.find_endpoints(g)
    w = o.cost_table(vehicle)
    nb = o.neighbours(shape)
    best, count, cells = None, 0, set()
    seen = {s}
    path = [s]

    def dfs(u, cost):
        nonlocal best, count, cells
        if u == t:
            if best is None or cost < best:
                best, count, cells = cost, 1, set(path)
            elif cost == best:
                count += 1
                cells |= set(path)
            return
        for v in nb[u]:
            if v not in seen and w[g[v]] < o.INF:
                seen.add(v)
                path.append(v)
                dfs(v, cost + w[g[v]])
                path.pop()
                seen.discard(v)

    dfs(s, 0)
    return best, count, cells


def _random_grid(rng, shape, ties: bool):
    H, W = shape
    n = H * W
    toks = [o.BUILDING, o.PARK] + [o.road_token(c, s) for c in range(3) for s in range(len(o.STATES))]
    p = np.ones(len(toks))
    p[:2] = 2.0
    if ties:  # few distinct costs: many equal-cost routes
        toks = [o.BUILDING, o.road_token(0, 0), o.road_token(2, 0)]
        p = np.array([1.0, 4.0, 2.0])
    g = rng.choice(toks, size=n, p=p / p.sum())
    s, t = rng.choice(n, size=2, replace=False)
    g[s], g[t] = o.start_token(o.VEHICLES[int(rng.integers(0, 4))]), o.END
    return g


@pytest.mark.parametrize("shape", [(4, 4), (5, 5), (4, 5)])
def test_oracle_matches_brute_force(shape):
    rng = np.random.default_rng(sum(shape))
    checked = 0
    for k in range(150):
        g = _random_grid(rng, shape, ties=k % 2 == 0)
        for v in o.VEHICLES:
            best, count, cells = _brute(g, shape, v)
            sol = o.solve(g, shape, v, cells=True)
            if best is None:
                assert sol is None
                continue
            checked += 1
            assert sol.cost == best and sol.count == count
            assert set(np.flatnonzero(sol.cells)) == cells
            if count == 1:
                assert set(sol.route) == cells and sol.route[0] == o.find_endpoints(g)[0]
            else:
                assert sol.route is None
    assert checked > 100


# ----------------------------------------------------------------------------- vocabulary, contract

def test_vocabulary():
    assert o.VOCAB_SIZE < 40 and o.PAD == 0 and len(o.TOKEN_NAMES) == len(o.PALETTE) == o.VOCAB_SIZE
    info = CityLogistics().info({})
    assert info.seq_len == 900 and info.grid_shape == (30, 30) and info.pad_id == 0 and info.ignore_label_id == 0
    assert list(info.identifiers) == list(o.VEHICLES)


def test_default_build_meets_hrm_contract(tmp_path):
    b = CityLogistics()
    ds = Dataset(build(b, tmp_path / "city", {}, progress=False))
    assert ds.identifiers[0] == "<blank>" and ds.identifiers[1:] == list(o.VEHICLES)
    for split, groups in (("train", 240), ("test", 100)):
        raw = json.loads((ds.path / split / "dataset.json").read_text())
        hrm = ("pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len", "num_puzzle_identifiers",
               "total_groups", "mean_puzzle_examples", "sets")
        assert all(k in raw for k in hrm)
        assert (raw["pad_id"], raw["ignore_label_id"], raw["blank_identifier_id"]) == (0, 0, 0)
        assert (raw["vocab_size"], raw["seq_len"], raw["num_puzzle_identifiers"]) == (o.VOCAB_SIZE, 900, 5)
        assert raw["total_groups"] == groups and raw["mean_puzzle_examples"] == 1.0 and raw["sets"] == ["all"]
        a = ds.split(split).set("all")
        n = groups * 4
        assert a.inputs.shape == a.labels.shape == (n, 900) and a.inputs.dtype == np.uint8
        assert a.puzzle_identifiers.dtype == np.int32 and a.puzzle_identifiers.shape == (n,)
        assert a.puzzle_indices.dtype == np.int32 and np.array_equal(a.puzzle_indices, np.arange(n + 1))
        assert a.group_indices.dtype == np.int32 and np.array_equal(a.group_indices, np.arange(0, n + 1, 4))
        assert (np.asarray(a.labels) != 0).all()   # every cell is labelled
    rep = b.report()
    assert rep["scenarios"] == 340 and rep["attempts"] >= 340
    from hrm_data.validate import validate
    r = validate(ds.path, deep=True)
    assert r.valid and not r.findings, r.format_text()
    # the user's document: B=32, E=100, I=10 -> 75 steps per iteration, 750 in total
    from hrm_data.plan import compute_plan
    p = compute_plan(ds, global_batch_size=32, epochs=100, eval_interval=10)
    assert (p.steps_per_iteration, p.iterations, p.total_steps) == (75, 10, 750)


# ----------------------------------------------------------------------------- well-posedness

def test_vehicle_restrictions_and_costs_hold(small):
    b, ds = small
    for split in ("train", "test"):
        a = ds.split(split).set("all")
        t = ds.split(split).side_table().sort_values("example")
        for i in range(a.num_examples):
            x, y = np.asarray(a.inputs[i], np.int64), np.asarray(a.labels[i], np.int64)
            s, _, v = o.find_endpoints(x)
            assert ds.identifiers[int(a.puzzle_identifiers[a.example_puzzle()[i]])] == v
            route = y == o.PATH
            classes = {o.ROAD_CLASSES[c] for c in o.TOKEN_CLASS[x[route]]}
            assert classes <= set(o.allowed_classes(v)), (v, classes)
            assert (o.TOKEN_STATE[x[route]] != o.CLOSED).all()
            assert int(o.cost_array(v)[x[route]].sum()) == int(t.iloc[i]["route_cost"])
            assert int(route.sum()) + 1 == int(t.iloc[i]["route_length"])
            assert int(t.iloc[i]["optimal_routes"]) == 1


def test_jams_keep_their_road_class():
    rng = np.random.default_rng(3)
    jams = 0
    for _ in range(40):
        kind = cl.generate_map(rng, 20)
        state = cl.generate_traffic(rng, kind, hour=8)   # rush hour: jams
        sc = cl.Scenario(kind, state, 0, 1, 8)
        tok = sc.base_map().reshape(20, 20)
        road = kind >= 0
        assert np.array_equal(o.TOKEN_CLASS[tok][road], kind[road])
        assert (o.TOKEN_CLASS[tok][~road] == -1).all()
        jam_small = road & (state == o.JAM) & (kind == cl.K_SMALL)
        jams += int((state == o.JAM).sum())
        # a jammed side street is still a side street: a truck may not use it, a car pays the jam cost
        assert all(o.cost_table("truck")[t] >= o.INF for t in tok[jam_small])
        assert all(o.cost_table("car")[t] == o.COSTS["car"]["small"][o.JAM] for t in tok[jam_small])
    assert jams > 0


def _corridor_scenario(n=10, open_for_truck=True):
    """Start and end on two large roads joined only by a side street (unless open_for_truck)."""
    kind = np.full((n, n), cl.K_BUILDING, np.int8)
    kind[0, :] = cl.K_LARGE
    kind[n - 1, :] = cl.K_LARGE
    kind[:, 4] = cl.K_LARGE if open_for_truck else cl.K_SMALL
    kind[0, 4] = kind[n - 1, 4] = cl.K_LARGE
    state = np.where(kind >= 0, 0, -1).astype(np.int8)
    return cl.Scenario(kind, state, 0, n * n - 1, 10)


def test_no_route_scenario_is_redrawn_not_relaxed(monkeypatch):
    draws = iter([_corridor_scenario(open_for_truck=False), _corridor_scenario(open_for_truck=True)])
    monkeypatch.setattr(cl, "draw_scenario", lambda rng, n, md: next(draws))
    built = cl.build_scenario(0, "train", 0, 10, o.VEHICLES, "route", 0, 0)
    assert built.stats["redrawn_no_route"] == 1 and built.stats["attempts"] == 2
    truck = built.identifiers.index("truck")
    route = built.labels[truck] == o.PATH
    assert (o.TOKEN_CLASS[built.inputs[truck][route]] == 0).all()   # large roads only


def test_tied_scenario_is_redrawn_in_route_mode(monkeypatch):
    n = 6
    kind = np.full((n, n), cl.K_LARGE, np.int8)            # an open square: many equal routes
    state = np.zeros((n, n), np.int8)
    tied = cl.Scenario(kind, state, 0, n * n - 1, 10)
    draws = iter([tied, _corridor_scenario(n, open_for_truck=True)])
    monkeypatch.setattr(cl, "draw_scenario", lambda rng, n_, md: next(draws))
    built = cl.build_scenario(0, "train", 0, n, ("car",), "route", 0, 0)
    assert built.stats["redrawn_not_unique"] == 1
    # optimal-cells keeps it: every cell of the square lies on some optimal route
    draws2 = iter([tied])
    monkeypatch.setattr(cl, "draw_scenario", lambda rng, n_, md: next(draws2))
    built = cl.build_scenario(0, "train", 0, n, ("car",), "optimal-cells", 0, 0)
    assert built.stats["attempts"] == 1 and (built.labels[0] != o.BUILDING).all()
    assert built.rows[0]["optimal_routes"] == 252   # C(10, 5) monotone lattice paths


# ----------------------------------------------------------------------------- determinism and splits

def test_same_seed_same_bytes_and_workers_do_not_matter(tmp_path):
    _, a = _build(tmp_path, "a", seed=5)
    _, b = _build(tmp_path, "b", seed=5, workers=2)
    _, c = _build(tmp_path, "c", seed=6)
    def tree(ds):  # every file, dataset.json included (it once recorded --workers: issue 7)
        return {str(p.relative_to(ds.path)): p.read_bytes() for p in sorted(ds.path.rglob("*")) if p.is_file()}
    assert tree(a) == tree(b)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_no_scenario_crosses_splits(small):
    _, ds = small
    keys = {s: set(ds.split(s).side_table()["group_key"]) for s in ("train", "test")}
    assert len(keys["train"]) == 12 and len(keys["test"]) == 6 and not keys["train"] & keys["test"]
    tr = {r.tobytes() for r in np.asarray(ds.train.set("all").inputs)}
    te = {r.tobytes() for r in np.asarray(ds.test.set("all").inputs)}
    assert not tr & te


def test_duplicate_scenario_is_redrawn(monkeypatch):
    real = cl.build_scenario
    # every scenario of both splits comes out as train scenario 0 unless salted
    monkeypatch.setattr(cl, "build_scenario", lambda seed, split, i, *a, salt=0: real(seed, "train", 0, *a, salt=salt))
    b = CityLogistics()
    opts = dict(SMALL, train_scenarios=2, test_scenarios=1)
    keys = [g.key for s in ("train", "test") for g in b.groups(s, opts)]
    assert len(set(keys)) == 3 and b.report()["redrawn_duplicate"] == 3


def test_validate_flags_an_ill_posed_pair(tmp_path):
    """The public attempt's flaw: vehicle variants sharing one input and identifier, labels differing."""
    from hrm_data.validate import validate
    sc = _corridor_scenario()
    x = sc.encode("car")
    y1 = o.label_for(x, o.solve(x, (10, 10)), "route")
    y2 = x.copy()
    y2[np.flatnonzero(x == o.road_token(0, 0))[:5]] = o.PATH
    arrays = dict(inputs=np.stack([x, x]).astype(np.uint8), labels=np.stack([y1, y2]).astype(np.uint8),
                  puzzle_identifiers=np.array([1, 1], np.int32), puzzle_indices=np.array([0, 1, 2], np.int32),
                  group_indices=np.array([0, 2], np.int32))
    test = {k: v[:1] if k in ("inputs", "labels", "puzzle_identifiers") else v for k, v in arrays.items()}
    test.update(puzzle_indices=np.array([0, 1], np.int32), group_indices=np.array([0, 1], np.int32))
    test["inputs"] = test["labels"] = np.full((1, 100), o.BUILDING, np.uint8)
    write_arrays(tmp_path / "bad", {"train": arrays, "test": test}, vocab_size=o.VOCAB_SIZE,
                 identifiers=["<blank>", "car"])
    report = validate(tmp_path / "bad")
    assert "E701" in {f.code for f in report.errors}


# ----------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("label", ["route", "optimal-cells"])
def test_augmentation_commutes_with_building(label):
    n, shape, checked = 12, (12, 12), 0
    for i in range(6):
        built = cl.build_scenario(1, "train", i, n, o.VEHICLES, label, 0, 0)
        rng = np.random.default_rng(np.random.SeedSequence(1, spawn_key=(0, i)))
        # replay the accepted draw: the attempts before it came from the same stream
        for _ in range(built.stats["attempts"]):
            sc = cl.draw_scenario(rng, n, cl.min_distance_for(n, 0))
        for j, v in enumerate(built.identifiers):
            assert np.array_equal(sc.encode(v), built.inputs[j])
            for t in range(8):
                x_t = sc.transformed(t).encode(v)
                assert np.array_equal(x_t, dihedral_flat(built.inputs[j], t, shape))
                y_t = o.label_for(x_t, o.solve(x_t, shape, v, cells=True), label)
                assert np.array_equal(y_t, dihedral_flat(built.labels[j], t, shape)), (label, v, t)
                assert sc.transformed(t).key() == sc.key()
                checked += 1
    assert checked == 6 * 4 * 8


def test_augmented_puzzles_are_dihedral_variants(small):
    _, ds = small
    a = ds.train.set("all")
    t = ds.train.side_table().sort_values("example")
    assert a.num_puzzles == 12 * 4 * 3 and ds.train.metadata.mean_puzzle_examples == 1.0
    names = [ds.identifiers[int(p)] for p in a.puzzle_identifiers]
    assert names[:3] == ["bike"] * 3 and set(names) == set(o.VEHICLES)
    tids = {n: k for k, n in enumerate(("id", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose",
                                        "antitranspose"))}
    for base in range(0, 12, 3):
        assert t.iloc[base]["transform"] == "id"
        for k in (1, 2):
            tid = tids[t.iloc[base + k]["transform"]]
            assert tid != 0
            for f in ("inputs", "labels"):
                arr = np.asarray(getattr(a, f))
                assert np.array_equal(arr[base + k], dihedral_flat(arr[base], tid, (10, 10)))


# ----------------------------------------------------------------------------- domain check and metric

def test_score_accepts_every_optimal_route_and_rejects_broken_ones():
    n, shape = 6, (6, 6)
    kind = np.full((n, n), cl.K_LARGE, np.int8)
    x = cl.Scenario(kind, np.zeros((n, n), np.int8), 0, n * n - 1, 10).encode("car")
    sol = o.solve(x, shape, cells=True)
    assert sol.count == 252 and sol.route is None

    def grid_with(cells):
        y = x.copy()
        y[[r * n + c for r, c in cells]] = o.PATH
        return y

    right_then_down = [(0, c) for c in range(1, n)] + [(r, n - 1) for r in range(1, n - 1)]
    down_then_right = [(r, 0) for r in range(1, n)] + [(n - 1, c) for c in range(1, n - 1)]
    stairs = [(0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5)]
    detour = right_then_down + down_then_right          # two routes at once: not one simple path
    gap = right_then_down[:3] + right_then_down[4:]
    branch = right_then_down + [(1, 1)]
    longer = [(0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (3, 1), (4, 1), (5, 1), (5, 2), (5, 3), (5, 4)]
    preds = np.stack([grid_with(p) for p in (right_then_down, down_then_right, stairs, detour, gap, branch, longer)])
    r = cl.score_routes(np.stack([x] * len(preds)), preds, grid_shape=shape)
    assert r["valid"].tolist() == [True, True, True, False, False, False, True]
    assert r["optimal"].tolist() == [True, True, True, False, False, False, False]
    assert r["cost"][0] == sol.cost and r["cost"][6] > sol.cost and (r["optimal_cost"] == sol.cost).all()


def test_score_rejects_forbidden_and_closed_cells():
    sc = _corridor_scenario(open_for_truck=False)          # only a side street joins the two avenues
    x_car, x_truck = sc.encode("car"), sc.encode("truck")
    y = o.label_for(x_car, o.solve(x_car, (10, 10)), "route")
    y_truck = np.where(y == o.PATH, o.PATH, x_truck)
    r = cl.score_routes(np.stack([x_car, x_truck]), np.stack([y, y_truck]), grid_shape=(10, 10))
    assert r["valid"].tolist() == [True, False] and r["optimal"].tolist() == [True, False]
    assert r["optimal_cost"][1] == -1                       # no route exists for the truck
    closed = x_car.copy()
    closed[np.flatnonzero(y == o.PATH)[3]] = o.road_token(2, o.CLOSED)
    r = cl.score_routes(closed[None], np.where(y == o.PATH, o.PATH, closed)[None], grid_shape=(10, 10))
    assert not r["valid"][0]
    # shape and vehicle are read from the tokens alone
    r = cl.score_routes(x_car[None], y[None])
    assert r["optimal"].tolist() == [True]


def test_check_passes_clean_data_and_flags_tampered_labels(small, tmp_path):
    b, ds = small
    assert b.check(ds) == []
    # tamper: copy the dataset, break one route and swap one identifier
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(ds.path, bad)
    lab = np.load(bad / "train" / "all__labels.npy")
    route = np.flatnonzero(lab[0] == o.PATH)
    lab[0, route[len(route) // 2]] = np.load(bad / "train" / "all__inputs.npy")[0, route[len(route) // 2]]
    np.save(bad / "train" / "all__labels.npy", lab)
    pids = np.load(bad / "test" / "all__puzzle_identifiers.npy")
    pids[0] = 1 + (pids[0] % 4)
    np.save(bad / "test" / "all__puzzle_identifiers.npy", pids)
    codes = {(f.code, f.split, f.index) for f in b.check(Dataset(bad))}
    assert ("B106", "train", 0) in codes and ("B102", "test", 0) in codes
    from hrm_data.validate import validate
    report = validate(bad, deep=True)
    assert {"B106", "B102"} <= {f.code for f in report.errors}


def test_optimal_cells_dataset_checks_clean(tmp_path):
    b, ds = _build(tmp_path, label="optimal-cells", train_scenarios=6, test_scenarios=3)
    assert b.check(ds) == [] and b.report()["redrawn_not_unique"] == 0


def test_bad_options_are_value_errors():
    b = CityLogistics()
    for bad in (dict(vehicles="car,plane"), dict(vehicles="car,car"), dict(num_aug=8), dict(size=3),
                dict(train_scenarios=0), dict(test_scenarios=-1), dict(min_distance=-5), dict(seed=-1),
                dict(min_distance=100)):
        with pytest.raises(ValueError):
            b.info(bad)


def test_score_as_the_trainer_calls_it(small):
    b, ds = small
    a = ds.test.set("all")
    labels = np.asarray(a.labels).copy()
    r = b.score(ds, "test", labels)
    naive = r.pop("naive_baseline")
    assert r == {"route_valid": 1.0, "route_optimal": 1.0, "cost_excess": 0.0, "examples": a.num_examples}
    assert 0.0 < naive < 1.0
    bad = np.asarray(a.inputs).copy()            # predicts no route at all
    r = b.score(str(ds.path), "test", bad)
    assert r["route_valid"] == 0.0 and r["route_optimal"] == 0.0
    assert r["cost_excess"] is None              # no valid route: no extra cost to report (n/a, not 0)
    assert r["naive_baseline"] == naive          # a property of the test labels, not of the predictions


def _brute_fewest(grid: np.ndarray, shape):
    """Every simple path over open road cells by DFS: (fewest moves, how many paths have that few)."""
    g = grid.reshape(-1)
    s, t, _ = o.find_endpoints(g)
    ok = [(o.TOKEN_CLASS[v] >= 0 and o.TOKEN_STATE[v] != o.CLOSED) or v >= o.START0 for v in g.tolist()]
    nb = o.neighbours(shape)
    best, count = None, 0
    seen = {s}

    def dfs(u, d):
        nonlocal best, count
        if best is not None and d > best:
            return
        if u == t:
            best, count = (d, 1) if best is None or d < best else (best, count + 1)
            return
        for v in nb[u]:
            if v not in seen and ok[v]:
                seen.add(v)
                dfs(v, d + 1)
                seen.discard(v)

    dfs(s, 0)
    return best, count


def test_naive_baseline_counts_fewest_cells_routes_exactly():
    b = CityLogistics()
    x = np.concatenate([np.concatenate([p.inputs for p in g.puzzles])
                        for g in b.groups("train", dict(train_scenarios=8, size=6, min_distance=6))])
    y = np.concatenate([np.concatenate([p.labels for p in g.puzzles])
                        for g in b.groups("train", dict(train_scenarios=8, size=6, min_distance=6))])
    moves, count = o.fewest_cells_routes(x, (6, 6))
    for i in range(len(x)):
        assert (moves[i], count[i]) == _brute_fewest(x[i], (6, 6))
    p = o.naive_exact(x, y, (6, 6))
    route_moves = (y == o.PATH).sum(1) + 1
    assert np.array_equal(p == 0, route_moves > moves)          # a longer optimal route: naive is never right
    assert np.allclose(p[p > 0], 1 / count[p > 0])
    assert (p < 1).any() and (p > 0).any()
    blocked = x[:1].copy()
    blocked[0, blocked[0] < o.START0] = o.BUILDING              # no road at all between start and end
    assert o.fewest_cells_routes(blocked, (6, 6))[0][0] == -1 and o.naive_exact(blocked, y[:1], (6, 6))[0] == 0


def test_score_examples_per_row_and_consistent_with_score(small):
    b, ds = small
    a = ds.test.set("all")
    n = a.num_examples
    preds = np.asarray(a.labels).copy()
    preds[n // 2:] = np.asarray(a.inputs)[n // 2:]        # second half predicts no route
    r = b.score_examples(ds, "test", preds)
    assert set(r) >= {"valid", "optimal", "cost_excess"} and all(len(v) == n for v in r.values())
    half = n // 2
    assert r["valid"][:half].all() and r["optimal"][:half].all() and not r["valid"][half:].any()
    assert (r["cost_excess"][:half] == 0).all() and np.isnan(r["cost_excess"][half:]).all()
    assert (r["cost"][:half] == r["optimal_cost"][:half]).all() and (r["cost"][half:] == -1).all()
    s = b.score(ds, "test", preds)
    assert s["route_valid"] == pytest.approx(r["valid"].mean()) and s["cost_excess"] == 0.0
