"""The CUDA paths: bf16 autocast training, GPU inference against the CPU's, k-means on the GPU, NCCL under
torchrun, and the app's train task with ``device cuda``. Skipped without a CUDA GPU; ``scripts/gpu_check.sh``
runs them on a GPU machine."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepmcat.config import DeepMCATConfig, ModelConfig
from deepmcat.model import DeepMCATNet

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA GPU here: scripts/gpu_check.sh runs these on a GPU machine"),
]
FAST = dict(clusters=6, frames=4, size=32, warmup_epochs=3, epochs=2, batch_size=16, seed=1)


def test_bf16_autocast_training_steps_lower_the_loss_on_cuda():
    import torch.nn.functional as F

    from deepmcat.features import autocast
    from deepmcat.losses import group_contrastive

    torch.manual_seed(0)
    net = DeepMCATNet(4, ModelConfig(), 6).cuda().train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(32, 4, 32, 32, device="cuda")
    groups, labels = torch.arange(32, device="cuda") // 4, torch.arange(32, device="cuda") % 6
    losses = []
    for _ in range(20):
        with autocast(torch.device("cuda"), True):
            (_, logits, z1), (_, _, z2) = net(x + 0.1 * torch.randn_like(x)), net(x + 0.1 * torch.randn_like(x))
            assert logits.dtype == z1.dtype == torch.bfloat16  # the convolutions and matmuls ran in bf16
            loss = group_contrastive(z1, z2, groups) + F.cross_entropy(logits.float(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())


def test_gpu_features_match_the_cpu_features():
    from deepmcat.features import extract_features

    torch.manual_seed(0)
    net = DeepMCATNet(4, ModelConfig(), 6)
    x = np.random.default_rng(0).standard_normal((64, 4, 32, 32)).astype(np.float32)
    cpu = extract_features(net, x, torch.device("cpu"), amp=False)
    gpu = extract_features(net.cuda(), x, torch.device("cuda"), amp=True)
    cosine = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    assert cosine.min() > 0.99, cosine.min()


def test_training_on_cuda_publishes_a_model_that_predicts_alike_on_cpu(tiny_phantoms, tmp_path):
    from deepmcat.data import load_collection
    from deepmcat.inference import Model
    from deepmcat.trainer import Trainer

    cfg = DeepMCATConfig().override(device="cuda", **FAST)
    collection = load_collection(tiny_phantoms, cfg.preprocess, progress=False)
    torch.cuda.reset_peak_memory_stats()
    result = Trainer(cfg, tmp_path, progress=False).fit_collection(collection)
    assert torch.cuda.max_memory_allocated() > 0
    on_gpu, on_cpu = Model(tmp_path, device="cuda"), Model(tmp_path, device="cpu")
    assert on_gpu.info["trained_on"].startswith("cuda")
    gpu = np.array([p.cluster for p in on_gpu.predict(collection.tensors)])
    cpu = np.array([p.cluster for p in on_cpu.predict(collection.tensors)])
    assert np.mean(gpu == result.assignments) >= 0.9 and np.mean(cpu == gpu) >= 0.9, (gpu, cpu)


def test_kmeans_on_the_gpu_finds_what_the_cpu_finds():
    from deepmcat import clustering
    from deepmcat.config import ClusterConfig

    if clustering.faiss_gpus() == 0:
        pytest.skip("faiss-cpu is installed: k-means runs on the CPU (install faiss-gpu for GPU k-means)")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 32)).astype(np.float32) * 5
    x = (centres[rng.integers(0, 8, 20_000)] + rng.standard_normal((20_000, 32))).astype(np.float32)
    gpu = clustering.kmeans(x, 8, ClusterConfig(), seed=0)
    cpu_index = clustering.faiss.Kmeans(32, 8, niter=20, nredo=3, seed=0, gpu=False)
    cpu_index.train(x)
    assert gpu.objective <= 1.05 * cpu_index.obj[-1]


def test_nccl_training_under_torchrun_on_the_visible_gpus(tiny_phantoms, tmp_path):
    from deepmcat import checkpoint
    from deepmcat.serve import free_port

    gpus = torch.cuda.device_count()
    args = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(gpus),
                          "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "deepmcat.cli",
                          "train", "--distributed", "--device", "cuda", "--data", str(tiny_phantoms), "--out",
                          str(tmp_path), "--quiet", *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "training DeepMCAT on cuda:0" in run.stdout
    state = checkpoint.load(tmp_path / checkpoint.MODEL)
    assert state["distributed"]["world"] == gpus and state["trained_on"].startswith("cuda:0")


def test_the_app_trains_on_the_gpu(tmp_path):
    pytest.importorskip("monailabel", reason="MONAI Label is not installed in this environment")
    from monailabel.client import MONAILabelClient

    from deepmcat.serve import start_server
    from tests.helpers import APP_CONF, make_app_studies, wait_for_training

    studies = make_app_studies(tmp_path)
    server = start_server(studies, dict(APP_CONF, device="cuda", model_dir=tmp_path / "model"),
                          log_path=tmp_path / "server.log")
    try:
        client = MONAILabelClient(server.url)
        client.train_start("deepmcat", {})
        assert wait_for_training(client)["status"] == "DONE", server.log_tail()
        state = client.info()["models"]["deepmcat"]["deepmcat"]
        assert state["trained"] and state["trained_on"].startswith("cuda"), json.dumps(state)
    finally:
        server.stop()
