"""Sparse puzzle embedding and its sign-SGD optimizer (decoupled weight decay, duplicate ids, ranks)."""
import os
import socket

import pytest

torch = pytest.importorskip("torch")

from hrm_model.sparse_embedding import (CastedSparseEmbedding, CastedSparseEmbeddingSignSGD,  # noqa: E402
                                        CastedSparseEmbeddingSignSGD_Distributed)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _emb(batch_size=4, n=6, d=3, cast_to=torch.float32):
    emb = CastedSparseEmbedding(n, d, batch_size=batch_size, init_std=0, cast_to=cast_to)
    with torch.no_grad():
        emb.weights.copy_(torch.arange(n * d, dtype=torch.float32).view(n, d) / 10)
    return emb


def test_buffers_and_forward_modes():
    emb = _emb()
    assert {k for k, _ in emb.named_parameters()} == set()
    assert set(emb.state_dict()) == {"weights"}  # local buffers are not persistent
    assert emb.local_weights.requires_grad and emb.local_ids.dtype == torch.int32
    ids = torch.tensor([5, 1, 1, 0], dtype=torch.int32)
    out = emb(ids)
    assert torch.equal(out, emb.weights[ids]) and torch.equal(emb.local_ids, ids)
    (out * torch.arange(4.0).view(4, 1)).sum().backward()
    assert torch.equal(emb.local_weights.grad, torch.arange(4.0).view(4, 1).expand(4, 3))
    emb.eval()
    out = emb(torch.tensor([2, 3]))
    assert torch.equal(out, emb.weights[[2, 3]]) and not out.requires_grad
    assert _emb(cast_to=torch.bfloat16).train()(ids).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="batch_size"):
        emb.train()(torch.tensor([1, 2], dtype=torch.int32))


def test_sign_sgd_updates_only_batch_rows_with_decoupled_decay():
    emb = _emb()
    before = emb.weights.clone()
    ids = torch.tensor([4, 1, 1, 2], dtype=torch.int32)
    emb(ids)
    # row 1 appears twice: +1 and -3 sum to -2 -> sign -1; row 2 gets zero grad -> decay only
    emb.local_weights.grad = torch.tensor([[1.0, -2.0, 0.5], [1.0, 0.0, 0.0], [-3.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    opt = CastedSparseEmbeddingSignSGD(emb.buffers(), lr=0.1, weight_decay=0.5, world_size=1)
    opt.step()
    lr, wd = 0.1, 0.5
    want = before.clone()
    want[4] = before[4] * (1 - lr * wd) - lr * torch.tensor([1.0, -1.0, 1.0])
    want[1] = before[1] * (1 - lr * wd) - lr * torch.tensor([-1.0, 0.0, 1.0])
    want[2] = before[2] * (1 - lr * wd)
    torch.testing.assert_close(emb.weights, want)
    untouched = [0, 3, 5]
    assert torch.equal(emb.weights[untouched], before[untouched])


def test_lr_via_param_groups_and_zero_grad():
    emb = _emb()
    opt = CastedSparseEmbeddingSignSGD_Distributed(emb.buffers(), lr=0, weight_decay=0.1, world_size=1)
    assert len(opt.param_groups) == 1 and len(opt.param_groups[0]["params"]) == 3
    emb(torch.tensor([0, 1, 2, 3], dtype=torch.int32)).sum().backward()
    before = emb.weights.clone()
    opt.step()  # lr = 0: nothing changes
    assert torch.equal(emb.weights, before)
    opt.param_groups[0]["lr"] = 1.0
    opt.step()
    torch.testing.assert_close(emb.weights[:4], before[:4] * 0.9 - 1.0)
    opt.zero_grad()
    assert emb.local_weights.grad is None
    with pytest.raises(RuntimeError, match="gradient"):
        opt.step()
    with pytest.raises(ValueError):
        CastedSparseEmbeddingSignSGD(emb.buffers(), lr=-1.0, weight_decay=0.1, world_size=1)


def test_world_size_needs_distributed():
    emb = _emb()
    emb(torch.tensor([0, 1, 2, 3], dtype=torch.int32)).sum().backward()
    with pytest.raises(RuntimeError, match="distributed"):
        CastedSparseEmbeddingSignSGD(emb.buffers(), lr=0.1, weight_decay=0.0, world_size=2).step()


def _two_rank_worker(rank, port, out_dir):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        emb = _emb(batch_size=2)
        ids = torch.tensor([[1, 3], [3, 5]][rank], dtype=torch.int32)
        emb(ids)
        # id 3: +1 on rank 0 and -2 on rank 1 -> summed -1 -> sign -1 on both ranks
        emb.local_weights.grad = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]],
                                               [[-2.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]][rank])
        CastedSparseEmbeddingSignSGD(emb.buffers(), lr=0.5, weight_decay=0.0, world_size=2).step()
        torch.save(emb.weights.clone(), os.path.join(out_dir, f"w{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_all_gather_ids_and_grads(tmp_path):
    # fork (torch is already imported) keeps this at ~1 s; spawn would re-import torch per rank
    mp = torch.multiprocessing.get_context("fork")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [mp.Process(target=_two_rank_worker, args=(r, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        if p.is_alive():  # never leave a hung rank behind
            p.terminate()
    assert [p.exitcode for p in procs] == [0, 0]
    w0, w1 = (torch.load(tmp_path / f"w{r}.pt") for r in range(2))
    before = _emb(batch_size=2).weights
    want = before.clone()
    want[1] -= 0.5 * torch.tensor([1.0, 1.0, 1.0])
    want[3] -= 0.5 * torch.tensor([-1.0, 0.0, 0.0])
    want[5] -= 0.5 * torch.tensor([-1.0, -1.0, -1.0])
    torch.testing.assert_close(w0, want)
    torch.testing.assert_close(w1, want)
