"""The fast path (data set on the device, batched augmentation), the small-data recipe and ``bench --train``.

There is no GPU here: the fast path runs on the CPU, where it is the same code but for
the CUDA-only settings (channels-last, fused AdamW, bf16). Its promise of no traffic with
the host inside a training step is checked on PyTorch's ``meta`` device, which stands in for
the GPU: every copy from the host and every read-back is seen there as it would be on CUDA.
"""

import itertools
import json
import traceback

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torchvision.transforms import v2

from cvt_edu.cli import main
from cvt_edu.cost.bench_train import TrainBenchConfig, bf16_peak_tflops, measure_training, train_bench_table
from cvt_edu.models import build_model
from cvt_edu.train.augment import PADDING, BatchAugment, batch_mix, image_transform, normalize, random_crop_flip
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.data import CIFAR10_MEAN, CIFAR10_STD, ImageTensors
from cvt_edu.train.loader import DeviceLoader
from cvt_edu.train.loop import fit, prepare


def reference_outcomes(image: torch.Tensor) -> torch.Tensor:
    """Every 32x32 crop of the reflect-padded uint8 image, then their mirrors: (2 * 81, 3, 32, 32), uint8."""
    padded = F.pad(image[None], [PADDING] * 4, mode="reflect")[0]
    size = image.shape[-1]
    crops = [padded[:, i : i + size, j : j + size] for i, j in itertools.product(range(2 * PADDING + 1), repeat=2)]
    crops = torch.stack(crops)
    return torch.cat([crops, crops.flip(-1)])


def all_crops_and_flips(image: torch.Tensor) -> torch.Tensor:
    """The reference outcomes of the image, normalised: (2 * 81, 3, 32, 32), float32."""
    return normalize(reference_outcomes(image), CIFAR10_MEAN, CIFAR10_STD)


def test_batched_crop_flip_draws_a_crop_and_a_flip_per_image(cifar_mini):
    image = cifar_mini[0].images[7]
    torch.manual_seed(0)
    out = BatchAugment("crop-flip", 32, CIFAR10_MEAN, CIFAR10_STD)(image.expand(64, -1, -1, -1).contiguous())
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    candidates = all_crops_and_flips(image)
    # every augmented image is exactly one of the 162 crop-and-flip results of the reference transform ...
    dist = (out[:, None] - candidates[None]).abs().flatten(2).amax(-1)  # (64, 162)
    assert dist.min(1).values.max() < 1e-4
    chosen = dist.argmin(1)
    # ... and the images of the batch drew different ones, flipped and not
    assert len(chosen.unique()) > 20
    assert (chosen >= 81).any() and (chosen < 81).any()
    # the per-image reference transform produces the same set
    torch.manual_seed(0)
    ref = torch.stack([image_transform("crop-flip", 32, CIFAR10_MEAN, CIFAR10_STD)(image) for _ in range(16)])
    assert (ref[:, None] - candidates[None]).abs().flatten(2).amax(-1).min(1).values.max() < 1e-4


def test_random_crop_flip_draws_every_outcome_of_the_reference_uniformly(cifar_mini):
    image = cifar_mini[0].images[7]
    outcomes = {c.numpy().tobytes(): k for k, c in enumerate(reference_outcomes(image))}
    assert len(outcomes) == 162  # 81 offsets x flipped or not, all different for this image
    torch.manual_seed(0)
    out = random_crop_flip(image.expand(8100, -1, -1, -1))
    assert out.dtype == torch.uint8 and out.shape == (8100, 3, 32, 32)
    drawn = torch.tensor([outcomes[x.numpy().tobytes()] for x in out])  # KeyError: not a reference outcome
    counts = torch.bincount(drawn, minlength=162)
    # 50 expected per outcome: a missing offset, a lost row of offsets or a biased flip would show
    assert counts.min() >= 20 and counts.max() <= 90, counts
    assert abs(counts[81:].sum().item() / 8100 - 0.5) < 0.03  # flipped half of the time


def test_trivial_augment_changes_images_and_keeps_the_range(cifar_mini):
    images = cifar_mini[0].images[:64]
    torch.manual_seed(0)
    plain = BatchAugment("crop-flip", 32, CIFAR10_MEAN, CIFAR10_STD)(images)
    torch.manual_seed(0)
    strong = BatchAugment("trivial", 32, CIFAR10_MEAN, CIFAR10_STD)(images)
    assert strong.shape == plain.shape and not torch.allclose(strong, plain)
    low = normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), CIFAR10_MEAN, CIFAR10_STD)
    high = normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), CIFAR10_MEAN, CIFAR10_STD)
    assert (strong >= low - 1e-5).all() and (strong <= high + 1e-5).all()


def test_batched_trivial_augment_is_the_reference_policy_drawn_per_group(cifar_mini):
    images = cifar_mini[0].images[:32]
    aug = BatchAugment("trivial", 32, CIFAR10_MEAN, CIFAR10_STD, groups=4)
    aug.crop_flip = torch.nn.Identity()  # look at the TrivialAugment step alone
    reference = image_transform("trivial", 32, CIFAR10_MEAN, CIFAR10_STD)
    (policy,) = [t for t in reference.transforms if isinstance(t, v2.TrivialAugmentWide)]
    changed_groups = 0
    for seed in range(12):
        torch.manual_seed(seed)
        out = aug(images)
        torch.manual_seed(seed)
        parts = [policy(part) for part in images.chunk(4)]
        # the same operations with the same magnitudes as the per-image path's policy ...
        assert torch.allclose(out, normalize(torch.cat(parts), CIFAR10_MEAN, CIFAR10_STD), atol=1e-6)
        # ... each drawn for a group of 8 images
        changed_groups += sum(not torch.equal(p, q) for p, q in zip(parts, images.chunk(4)))
    assert 0 < changed_groups < 48


def test_batch_augment_and_config_reject_bad_input():
    aug = BatchAugment("crop-flip", 32, CIFAR10_MEAN, CIFAR10_STD)
    with pytest.raises(ValueError, match=r"expected uint8 images \(B, C, 32, 32\), got torch.float32"):
        aug(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got torch.uint8 \(2, 3, 28, 28\)"):
        aug(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"expected images \(B, C, H, W\) with H and W > 4, got shape \(3, 32, 32\)"):
        random_crop_flip(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 4, 4\)"):
        random_crop_flip(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown augmentation policy 'autoaugment'"):
        BatchAugment("autoaugment", 32, CIFAR10_MEAN, CIFAR10_STD)
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainConfig(augment="strong")
    with pytest.raises(ValueError, match="must be >= 0"):
        TrainConfig(mixup_alpha=-1)


def test_batch_mix_gives_soft_labels_that_sum_to_one():
    assert batch_mix(10) is None
    images, labels = torch.rand(8, 3, 32, 32), torch.arange(8)
    torch.manual_seed(0)
    for mix in (batch_mix(10, mixup_alpha=0.8), batch_mix(10, cutmix_alpha=1.0), batch_mix(10, 0.8, 1.0)):
        mixed, soft = mix(images, labels)
        assert mixed.shape == images.shape and soft.shape == (8, 10)
        torch.testing.assert_close(soft.sum(1), torch.ones(8))
        # each image is mixed with one partner of the batch: all the weight is on the two labels
        partner = soft.clone()
        partner[torch.arange(8), labels] = 0
        torch.testing.assert_close(soft[torch.arange(8), labels] + partner.amax(1), torch.ones(8))
        assert (soft[torch.arange(8), labels] > 0).all()


def test_device_loader_visits_every_image_once_per_epoch_in_a_seeded_order():
    n = 250  # pixel values up to 249 fit in uint8
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 32, 32).contiguous()
    data = ImageTensors(images, torch.arange(n), ("a",) * 10)
    loader = DeviceLoader(data, 64, device=torch.device("cpu"), drop_last=False, seed=3)
    assert len(loader) == 4
    labels = torch.cat([y for _, y in loader])
    assert sorted(labels.tolist()) == list(range(n))
    first = torch.cat([y for _, y in DeviceLoader(data, 64, device=torch.device("cpu"), seed=3)])
    assert len(first) == 192  # drop_last drops the last 58
    assert torch.equal(first, labels[:192])  # same seed, same order
    # each label travels with its own image: the image's (constant) pixel value is its index
    x, y = next(iter(DeviceLoader(data, 64, device=torch.device("cpu"), seed=3)))
    pixel = x[:, 0, 16, 16] * CIFAR10_STD[0] + CIFAR10_MEAN[0]
    torch.testing.assert_close(pixel, y.float() / 255, atol=1e-4, rtol=0)


def test_a_split_moved_to_a_device_keeps_its_images_labels_classes_and_transform():
    data = ImageTensors(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4), ("a", "b"), image_transform("crop-flip", 32, CIFAR10_MEAN, CIFAR10_STD))
    assert data.to("cpu") is data  # already there: no copy
    moved = data.to("meta")
    assert moved.images.device.type == moved.labels.device.type == "meta"
    assert moved.images.shape == (4, 3, 32, 32) and moved.images.dtype == torch.uint8
    assert moved.classes == data.classes and moved.transform is data.transform


def test_the_recipe_with_mixing_runs_on_both_paths_and_its_loss_falls(cifar_mini):
    """Whether training learns is tested in test_train.py (on the fast path); here the mixing step runs on both paths."""
    train, test = cifar_mini
    # the recipe draws MixUp or CutMix for each batch, so the mixing path of the training step runs too
    cfg = TrainConfig.small_data(epochs=2, warmup_epochs=0.5, lr=2e-3, batch_size=32, train_subset=256, test_subset=64)
    assert (cfg.augment, cfg.mixup_alpha, cfg.cutmix_alpha) == ("trivial", 0.8, 1.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for fast in (False, True):
            torch.manual_seed(0)
            cfg.fast_path, cfg.progress = fast, False
            history = fit(build_model("cvt-tiny"), train, test, cfg)["history"]
            assert history[-1]["train_loss"] < history[0]["train_loss"], (fast, history)
    finally:
        torch.set_num_threads(threads)


class HostTraffic(TorchFunctionMode, TorchDispatchMode):
    """Records what would make the host wait for the GPU, for tensors on a device other than the CPU.

    - ``reads``: operations that bring values back to the host (``.item()``, ``.cpu()``, ``nonzero``, ...);
    - ``copies``: tensors copied from the host to the device (``.to(device)`` of a CPU tensor, or
      ``torch.tensor(data, device=...)``), which PyTorch makes wait for the device's queue.

    Each entry is (operation, the frames of the call stack outside this file).
    """

    READS = frozenset(
        {"_local_scalar_dense", "nonzero", "is_nonzero", "equal", "masked_select", "_unique2", "unique_dim", "unique_consecutive"}
    )

    def __init__(self):
        TorchFunctionMode.__init__(self)
        TorchDispatchMode.__init__(self)
        self.reads, self.copies = [], []

    def __enter__(self):
        TorchFunctionMode.__enter__(self)
        TorchDispatchMode.__enter__(self)
        return self

    def __exit__(self, *exc):
        TorchDispatchMode.__exit__(self, *exc)
        TorchFunctionMode.__exit__(self, *exc)

    @staticmethod
    def _where():
        return [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-2] if f.filename != __file__]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device = kwargs.get("device")
        from_host = func in (torch.tensor, torch.as_tensor) and device is not None and torch.device(device).type != "cpu"
        if from_host and not (isinstance(args[0], torch.Tensor) and args[0].device == torch.device(device)):
            self.copies.append((func.__name__, self._where()))
        return func(*args, **kwargs)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if name in self.READS and any(t.device.type != "cpu" for t in inputs):
            self.reads.append((name, self._where()))
        if name in ("_to_copy", "copy_"):  # copy_(dst, src), _to_copy(src, device=...)
            src = args[1] if name == "copy_" else args[0]
            dst = args[0].device if name == "copy_" else torch.device(kwargs.get("device") or src.device)
            if src.device.type == "cpu" and src.numel() and dst.type != "cpu":
                self.copies.append((name, self._where()))
            if src.device.type != "cpu" and dst.type == "cpu":
                self.reads.append((name, self._where()))  # .cpu(), .tolist(), .numpy()
        return func(*args, **kwargs)


def host_traffic_of_training_steps(policy: str, steps: int = 2) -> HostTraffic:
    """Run ``steps`` training steps of cvt-tiny on the fast path on the meta device; return what was seen."""
    cfg = TrainConfig.small_data(augment=policy, fast_path=True, progress=False)  # MixUp/CutMix on
    n = cfg.batch_size * (steps + 1)
    data = ImageTensors(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n) % 10, ("c",) * 10)
    run = prepare(build_model("cvt-tiny"), data, cfg, torch.device("meta"))
    batches = iter(run.loader)
    next(batches)  # the epoch's start: its shuffled order comes from the host once
    with HostTraffic() as seen:
        for _ in range(steps):
            images, labels = next(batches)
            run.step(images, labels)
    return seen


def test_a_fast_path_training_step_makes_the_host_wait_for_nothing():
    """Batch, crop-flip augmentation, MixUp/CutMix, forward, backward and AdamW: no copy, no read-back."""
    seen = host_traffic_of_training_steps("crop-flip")
    assert seen.reads == [] and seen.copies == [], (seen.reads, seen.copies)


def test_with_trivial_augment_only_torchvision_operations_copy_from_the_host():
    """torchvision's affine, rotate and sharpness build their small matrices on the host: those are
    the fast path's only host-to-device copies, and nothing is read back."""
    seen = host_traffic_of_training_steps("trivial", steps=4)
    assert seen.reads == []
    assert seen.copies  # 4 steps x 16 groups draw some geometric operations
    for op, stack in seen.copies:
        assert "torchvision/transforms/v2/functional" in stack[-1] and op == "tensor", (op, stack[-4:])


def test_training_benchmark_reports_throughput_and_mfu():
    row = measure_training("cvt-tiny", "eager", TrainBenchConfig(batch_size=16, steps=2, warmup=1, device="cpu", threads=1))
    assert row["images_per_second"] > 0 and row["epoch_seconds"] == pytest.approx(50_000 / row["images_per_second"])
    assert row["forward_flops_per_image"] > 1e7 and row["tflops"] > 0
    assert row["mfu"] is None and row["precision"] == "float32"  # no bf16 peak for a CPU
    table = train_bench_table([row, {"model": "vit-tiny", "mode": "compiled", "error": "RuntimeError('x')"}])
    flat = " ".join(table.split())
    assert "| cvt-tiny | eager |" in flat and "| n/a |" in flat and "error: RuntimeError" in table
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("Tesla T4") == 65.0 and bf16_peak_tflops("Some GPU") is None


def test_bench_train_command_prints_the_table(capsys, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "--train", "--models", "cvt-tiny", "--modes", "eager", "--batch-size", "8", "--steps", "1", "--warmup", "1"]
    assert main([*args, "--device", "cpu", "--threads", "1", "--fast-path", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| cvt-tiny | eager |" in " ".join(printed.split()) and "fast path on" in printed
    assert json.loads(out.read_text())["rows"][0]["images_per_second"] > 0
