"""Vision transformers (lmcnb.vit) and their fine-tuning augmentation (lmcnb.augment.vit_augment):
named shapes, a self-pretrained checkpoint loaded back with a new head, offline fail-fast, the
batched augmentation against v2's ops image by image, images and inputs resized for a ViT,
pretraining checkpoints published from step 0 and the fine-tuning setups that load them."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from lmcnb.chapters import vit as vit_chapter
from lmcnb.core import hub as pretrained
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data import augment, images
from lmcnb.data.augment import vit_augment
from lmcnb.data.tensors import TensorData
from lmcnb.data.vision import MEAN, STD, load_vision
from lmcnb.models import vit
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")


def _data(n, classes, seed=0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 3, 8, 8, generator=g),
                      torch.randint(0, classes, (n,), generator=g))


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_named_shapes_and_their_sizes():
    with torch.device("meta"):
        cpu = vit.build_vit(vit.vit_config("CPUViT", 10))
        base = vit.build_vit(vit.vit_config("ViTB16", 1000))
    # CPUViT: 32×32 inputs in 4×4 patches: 64 patch tokens + CLS; 2.69M parameters + the head.
    assert cpu.vit.embeddings.position_embeddings.shape == (1, 65, 192)
    assert _params(cpu) - _params(cpu.classifier) == 2_691_648
    assert _params(cpu.classifier) == 192 * 10 + 10
    assert _params(base) - _params(base.classifier) == 85_798_656  # the hub's ViT-B/16 backbone
    assert base.config.image_size == 224 and base.config.patch_size == 16
    assert cpu.config.problem_type == "single_label_classification"
    assert cpu.config.hidden_dropout_prob == cpu.config.attention_probs_dropout_prob == 0.0
    with pytest.raises(ValueError, match="CPUViT"):
        vit.vit_config("ViT-Ti", 10)


def _trainer(model_fn, data, seeds, steps=3) -> Trainer:
    streams = RngStreams(seeds)
    with streams.active("init"):
        model = model_fn()
    return Trainer(model, TrainConfig(batch_size=16, max_steps=steps, optimizer="adamw", lr=2e-4),
                   data, streams)


def test_a_self_pretrained_vit_loads_back_with_a_new_head_built_in_the_callers_stream(tmp_path):
    """Pretrain on 20 classes (Tiny ImageNet-20's count), save_pretrained, load with
    from_pretrained(<dir>) for 10 classes (CIFAR-10's): the backbone is the saved one, the head new
    and drawn from the init stream; spawned children inherit their parent's head."""
    pre = _trainer(lambda: vit.build_vit(vit.vit_config("ToyViT", 20)), _data(64, 20),
                   Seeds(1, 2, 3, 4))
    pre.run(3)
    folder = vit.save_pretrained(pre.model, tmp_path / "pretrained")
    saved = pre.model.state_dict()

    def load(init_seed):
        return _trainer(lambda: vit.load_pretrained(str(folder), 10), _data(64, 10, seed=1),
                        Seeds(init_seed, 5, 5, 5))

    torch.manual_seed(123)
    outside = torch.get_rng_state()
    parent, again, other = load(7), load(7), load(8)
    assert torch.equal(torch.get_rng_state(), outside)  # drawn from the init stream only
    state = parent.model.state_dict()
    assert state.keys() == saved.keys()
    for name, value in state.items():
        if not name.startswith("classifier."):
            assert torch.equal(value, saved[name]), name
    head = state["classifier.weight"]
    assert head.shape == (10, 16) and saved["classifier.weight"].shape == (20, 16)
    assert parent.model.config.num_labels == 10 and parent.model.training
    assert parent.model.config.problem_type == "single_label_classification"
    assert torch.equal(head, again.model.state_dict()["classifier.weight"])
    assert not torch.equal(head, other.model.state_dict()["classifier.weight"])
    # Fine-tuning: the forward returns `.logits` over 10 classes, the trainer takes it as it is.
    assert parent.model(torch.randn(2, 3, 8, 8)).logits.shape == (2, 10)
    parent.run(2)
    # Children built with other init seeds (other heads) take the parent's head when spawned.
    children = [load(seed) for seed in (20, 21)]
    for child in children:
        child.load_state_dict(parent.state_dict(), rng=False)
        child.run(3)
    heads = [c.model.classifier.weight.detach() for c in children]
    assert not torch.equal(heads[0], heads[1])  # they trained apart (own data order) ...
    w2 = parent.model.classifier.weight.detach()
    assert max(float((h - w2).abs().max()) for h in heads) < 1e-3  # ... from one head


def test_offline_hub_id_fails_at_once(monkeypatch):
    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(OSError, match="cannot be reached"):
        vit.load_pretrained("google/vit-base-patch16-224-in21k", 10)


# -- augmentation ------------------------------------------------------------------------------
MEAN_C, STD_C = (torch.tensor(v["cifar10"]).view(-1, 1, 1) for v in (MEAN, STD))


def _cifar_like(n, seed=0):
    pixels = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return (pixels - MEAN_C) / STD_C


def test_vit_augment_draws_per_image_from_the_global_generator():
    aug = vit_augment(MEAN["cifar10"], STD["cifar10"])
    x = _cifar_like(1).expand(16, -1, -1, -1).contiguous()  # one image, 16 times
    torch.manual_seed(0)
    out = aug(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert len({tuple(img.flatten()[:50].tolist()) for img in out}) == 16  # one draw per image
    torch.manual_seed(0)
    assert torch.equal(aug(x), out)
    # Still normalized pixels: de-normalized, they lie in [0, 1].
    pixels = out * STD_C + MEAN_C
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_vit_augment_without_crop_and_jitter_is_a_flip_and_round_trips_the_normalization():
    aug = vit_augment(MEAN["cifar10"], STD["cifar10"], crop_scale=1.0, jitter=(0, 0, 0, 0))
    x = _cifar_like(32, seed=1)
    torch.manual_seed(0)
    out = aug(x)
    flipped = [bool((o - xi.flip(-1)).abs().max() < 1e-5) for o, xi in zip(out, x)]
    same = [bool((o - xi).abs().max() < 1e-5) for o, xi in zip(out, x)]
    assert all(f != s for f, s in zip(flipped, same)) and 5 < sum(flipped) < 27
    cropped = vit_augment(MEAN["cifar10"], STD["cifar10"], jitter=(0, 0, 0, 0))(x)
    assert (cropped - x).abs().max() > 0.5  # the 24×24 crop, resized back, zooms in


def test_batched_augmentation_equals_v2_functional_image_by_image():
    """`apply` (the whole batch at once) against torchvision's v2.functional ops run image by
    image with the same drawn parameters: crop, resize, flip, then jitter in each image's order."""
    torch.manual_seed(0)
    pixels = torch.rand(48, 3, 32, 32)
    params = augment.draw(48, (32, 32), 0.75, augment.JITTER)
    assert params["crop"].tolist() == [24, 24]
    assert len({tuple(order) for order in params["order"].tolist()}) > 6  # per image
    out = augment.apply(pixels, params)
    ops = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
           "saturation": F.adjust_saturation, "hue": F.adjust_hue}
    for i in range(48):
        img = F.resize(F.crop(pixels[i], int(params["top"][i]), int(params["left"][i]), 24, 24),
                       [32, 32])
        img = F.horizontal_flip(img) if params["flip"][i] else img
        for j in params["order"][i].tolist():
            name = list(augment.JITTER_OPS)[j]
            img = ops[name](img, float(params[name][i]))
        assert torch.allclose(out[i], img, atol=2e-6, rtol=0), i
    with pytest.raises(ValueError, match="jitter"):
        vit_augment((0.5,) * 3, (0.5,) * 3, jitter=(0.2, 0.2, 0.2, 0.7))


def test_vit_images_and_inputs_resized_to_the_model(data_dir):
    small = images.vit_images("tiny_imagenet", "test", data_dir, size=32)
    full = load_vision("tiny_imagenet", "test", data_dir)
    assert small.x.shape == (1000, 3, 32, 32) and torch.equal(small.y, full.y)
    assert torch.allclose(small.x.mean((-1, -2)), full.x.mean((-1, -2)), atol=0.02)  # averaged
    proc = images.vit_images("tiny_imagenet", "test", data_dir, size=32, normalize="processor")
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (MEAN["tiny_imagenet"],
                                                          STD["tiny_imagenet"]))
    assert torch.allclose(proc.x, ((small.x * std + mean) - 0.5) / 0.5, atol=1e-5)
    assert images.pixel_stats("cifar10", "processor") == ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="'dataset', 'processor'"):
        images.pixel_stats("cifar10", "imagenet")
    # A model of 8×8 inputs fed 4×4 images: resized in its forward, as the processor would.
    torch.manual_seed(0)
    model = vit.resize_inputs(vit.build_vit(vit.vit_config("ToyViT", 10))).eval()
    x = torch.randn(2, 3, 4, 4)
    up = F.resize(x, [8, 8], antialias=False)
    assert torch.equal(model(x).logits, model(up).logits)
    assert torch.equal(model(pixel_values=x).logits, model(up).logits)
    plain = vit.build_vit(model.config).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.equal(plain(up).logits, model(x).logits)
    with pytest.raises(ValueError, match="doesn't match"):
        plain(x)  # without the hook, transformers refuses the size


def test_pretraining_publishes_checkpoints_from_step_0_that_fine_tuning_loads(tmp_path,
                                                                            data_dir):
    """`pretrain` on Tiny ImageNet-20 (8×8 here): a save_pretrained folder per requested step,
    step 0 the initialization; each loads with a new 10-class head; a damaged folder is rebuilt;
    fine-tuning setups from two checkpoints are different runs."""
    train = TrainConfig(batch_size=16, max_steps=4, optimizer="adamw", lr=1e-3, augment=True)
    images = vit_chapter.Images.build(dict(size=8, normalize="dataset", crop_scale=0.75,
                                           jitter=[0.2, 0.2, 0.2, 0.05]))
    folders = vit_chapter.pretrain("ToyViT", train, tmp_path, [0, 2, "4it"], size=8,
                                   images=images, data_dir=str(data_dir))
    assert sorted(folders) == [0, 2, 4]
    states = {k: {n: t.clone() for n, t in vit.load_pretrained(f, 20).state_dict().items()}
              for k, f in folders.items()}  # copies: the loaded tensors map the files
    assert not torch.equal(states[0]["vit.layernorm.weight"], states[4]["vit.layernorm.weight"])
    assert torch.equal(states[0]["vit.layernorm.weight"], torch.ones(16))  # untrained
    (Path(folders[2]) / "model.safetensors").write_bytes(b"damaged")
    again = vit_chapter.pretrain("ToyViT", train, tmp_path, [0, 2, 4], size=8, images=images,
                                 data_dir=str(data_dir))
    assert again == folders
    assert torch.equal(vit.load_pretrained(again[2], 20).state_dict()["classifier.weight"],
                       states[2]["classifier.weight"])
    setups = {k: vit_chapter.vit_setup("unit", "toy", train, tmp_path, pretrained=folders[k],
                                       images=images, data_dir=str(data_dir)) for k in (0, 4)}
    assert setups[0].trunk(0).spec.run_id != setups[4].trunk(0).spec.run_id
    jitter = vit_chapter.vit_setup("unit", "toy", train, tmp_path, pretrained=folders[4],
                                   images=replace(images, jitter=[0.4, 0.2, 0.2, 0.0]),
                                   data_dir=str(data_dir))
    assert jitter.trunk(0).spec.run_id != setups[4].trunk(0).spec.run_id
    with pytest.raises(ValueError, match="not both"):
        vit_chapter.vit_setup("unit", "toy", train, tmp_path, images=images, shape="ToyViT",
                              pretrained=folders[4])
