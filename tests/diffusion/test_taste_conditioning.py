"""Taste-conditioned denoisers: the zero-initialised conversion, labels, classifier-free guidance."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from encore.diffusion.engine import Engine
from encore.diffusion.folder import LoadedModel, load_model_folder, save_model_folder
from encore.diffusion.model import Guidance, conditioned_denoiser
from encore.diffusion.sampling import generate, guided, merge, predict_noise, vary
from encore.errors import InvalidInput

MakeTiny = Callable[..., LoadedModel]
H, W = 16, 32


def _images(seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, H, W, generator=g) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1).clamp(-1, 1)


def _conditioned(model: LoadedModel, k: int = 3) -> LoadedModel:
    return replace(model, denoiser=conditioned_denoiser(model.denoiser, k).eval())


def _train_embedding(model: LoadedModel, seed: int = 0) -> None:
    """Give every row of the class embedding its own random vector (as training would)."""
    g = torch.Generator().manual_seed(seed)
    emb = model.denoiser.unet.class_embedding
    with torch.no_grad():
        emb.weight.copy_(torch.randn(emb.weight.shape, generator=g))


@pytest.mark.parametrize("layout", ["unshuffle", "plain"])
def test_zero_initialised_conditioning_reproduces_the_parent_exactly(layout: str, make_tiny: MakeTiny) -> None:
    parent = make_tiny(layout)
    before = {k: v.clone() for k, v in parent.denoiser.state_dict().items()}
    child = conditioned_denoiser(parent.denoiser, 3).eval()
    assert child.num_groups == 3 and child.null_label == 3 and parent.denoiser.num_groups == 0
    assert child.unet.class_embedding.weight.shape[0] == 4
    assert torch.count_nonzero(child.unet.class_embedding.weight) == 0
    x, t = _images(0, batch=4) * 0.5, torch.tensor([999, 500, 20, 0])
    with torch.no_grad():
        expected = parent.denoiser(x, t)
        for labels in (None, 0, 2, 3, torch.tensor([0, 1, 2, 3])):
            assert torch.equal(child(x, t, labels), expected)
    # the parent is untouched, every other weight copied
    assert all(torch.equal(v, before[k]) for k, v in parent.denoiser.state_dict().items())
    child_state = child.state_dict()
    assert all(torch.equal(child_state[k], v) for k, v in before.items())
    # and whole samplings are the parent's, for any group and guidance scale
    ref = generate(parent, width=W, seed=5, steps=6, sampler="dpmpp").images
    cond = _conditioned(parent)
    for group, scale in ((0, 1.0), (2, 1.0), (1, 3.0)):
        out = generate(guided(cond, group, scale), width=W, seed=5, steps=6, sampler="dpmpp").images
        if scale == 1.0:
            assert torch.equal(out, ref)
        else:  # the null and group passes run as one batch of two: rounding only
            assert torch.allclose(out, ref, atol=1e-5)


def test_labels_reach_the_unet_and_are_checked(make_tiny: MakeTiny) -> None:
    model = _conditioned(make_tiny())
    _train_embedding(model)
    x, t = _images(1, batch=2), torch.tensor([400, 400])
    with torch.no_grad():
        outs = [model.denoiser(x, t, g) for g in range(4)]
        assert torch.equal(model.denoiser(x, t), outs[3])  # no label = the null label
        mixed = model.denoiser(x, t, torch.tensor([0, 2]))
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.allclose(outs[a], outs[b], atol=1e-4)
    assert torch.allclose(mixed[0], outs[0][0], atol=1e-6) and torch.allclose(mixed[1], outs[2][1], atol=1e-6)
    for bad in (4, -1, torch.tensor([0, 1, 2])):
        with pytest.raises(InvalidInput):
            model.denoiser(x, t, bad)
    with pytest.raises(InvalidInput, match="not conditioned"):
        make_tiny().denoiser(x, t, 0)
    with pytest.raises(InvalidInput, match="num_groups"):
        conditioned_denoiser(make_tiny().denoiser, 0)


def test_reconditioning_starts_every_group_at_the_null_label(make_tiny: MakeTiny) -> None:
    model = _conditioned(make_tiny(), 2)
    _train_embedding(model)
    child = conditioned_denoiser(model.denoiser, 5).eval()
    x, t = _images(2), torch.tensor([300])
    with torch.no_grad():
        null = model.denoiser(x, t)
        assert all(torch.equal(child(x, t, g), null) for g in range(6))


def test_guidance_scale_one_is_the_conditional_pass_and_zero_the_null_label(make_tiny: MakeTiny) -> None:
    model = _conditioned(make_tiny())
    _train_embedding(model)
    calls: list[int] = []
    model.denoiser.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x, t = _images(3, batch=2), torch.tensor(600)
    with torch.no_grad():
        e_group, e_null = model.denoiser(x, t, 1), model.denoiser(x, t)
        calls.clear()
        assert torch.equal(predict_noise(guided(model, 1, 1.0), x, t), e_group)
        assert calls == [2]  # one UNet call, not two
        calls.clear()
        e3 = predict_noise(guided(model, 1, 3.0), x, t)
        assert calls == [4]  # null and group in one batch
        assert torch.allclose(e3, e_null + 3.0 * (e_group - e_null), atol=1e-5)
        assert torch.allclose(predict_noise(guided(model, 1, 0.0), x, t), e_null, atol=1e-6)
        assert torch.equal(predict_noise(guided(model, None), x, t), e_null)
    # a whole generation at scale 0 is the unconditioned (null-label) generation
    ref = generate(model, width=W, seed=9, steps=5).images
    assert torch.allclose(generate(guided(model, 2, 0.0), width=W, seed=9, steps=5).images, ref, atol=1e-5)
    assert not torch.allclose(generate(guided(model, 2, 1.0), width=W, seed=9, steps=5).images, ref, atol=1e-3)


def test_guidance_reaches_variations_and_merges(make_tiny: MakeTiny) -> None:
    model = _conditioned(make_tiny())
    _train_embedding(model, seed=1)
    x = _images(4)
    for run in (lambda m: vary(m, x, strength=0.6, seed=1, steps=6).images,
                lambda m: merge(m, [x, _images(5)], steps=4).images):
        plain, group = run(model), run(guided(model, 0, 2.0))
        assert not torch.allclose(plain, group, atol=1e-3)
        assert torch.equal(run(guided(model, 0, 2.0)), group)


def test_guided_checks_the_group_and_ignores_unconditioned_models(make_tiny: MakeTiny) -> None:
    plain = make_tiny()
    assert guided(plain, 2, 3.0) is plain  # an unconditioned version ignores the group
    model = _conditioned(plain)
    assert guided(model, None) is model
    assert guided(model, 1, 2.0).guidance == Guidance(1, 2.0)
    assert guided(guided(model, 1), None).guidance is None
    with pytest.raises(InvalidInput, match="3 taste groups"):
        guided(model, 3)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInput):
            guided(model, 0, bad)


def test_a_conditioned_folder_round_trips_and_the_engine_records_the_group(
    tmp_path: Path, make_tiny: MakeTiny
) -> None:
    model = _conditioned(make_tiny())
    _train_embedding(model)
    folder = save_model_folder(tmp_path / "cond", model.denoiser, model.mel_config, scheduler=model.scheduler)
    loaded = load_model_folder(folder, device="cpu")
    assert loaded.denoiser.num_groups == 3
    x, t = _images(6), torch.tensor([250])
    with torch.no_grad():
        assert torch.equal(loaded.denoiser(x, t, 1), model.denoiser(x, t, 1))
    engine = Engine(folder, device="cpu", precision="fp32", vocoder_iters=2)
    grouped = engine.for_group(1, 2.0)
    assert grouped is not engine and engine.model.guidance is None and grouped.vocoder() is engine.vocoder()
    a = grouped.generate_batch(seeds=[3], seconds=0.3, steps=4)[0]
    b = engine.generate_batch(seeds=[3], seconds=0.3, steps=4)[0]
    assert a.params["guidance"] == {"group": 1, "scale": 2.0} and "guidance" not in b.params
    assert not (a.image == b.image).all()
    plain_dir = save_model_folder(tmp_path / "plain", make_tiny().denoiser, model.mel_config)
    plain_engine = Engine(plain_dir, device="cpu")
    assert plain_engine.for_group(1, 2.0) is plain_engine


# -- training: group labels in batches, label dropout, conditioned fine-tunes -------------------


def test_group_labels_flow_into_pair_and_label_batches() -> None:
    from encore.diffusion.training.preference import LabelBatches, PairBatches

    # image i is constant i / 10, so a crop tells which example it came from
    images = [torch.full((1, H, 16), i / 10) for i in range(6)]
    pairs = [(0, 1, 1.0), (2, 3, 1.0), (4, 5, 1.0)]
    groups = [2, 0, 1]
    batches = PairBatches(images, pairs, width=16, pairs_per_batch=5, seed=0, groups=groups)
    for _ in range(3):
        b = batches.next_batch()
        winners = [round(float(x.mean()) * 10) for x in b.winners]
        assert b.groups is not None and b.groups.tolist() == [groups[w // 2] for w in winners]
    assert PairBatches(images, pairs, width=16, pairs_per_batch=2, seed=0).next_batch().groups is None
    labels = [(0, True, 1.0), (1, False, 1.0), (2, True, 1.0), (3, False, 1.0)]
    lb = LabelBatches(images, labels, width=16, per_batch=6, seed=1, groups=[0, 1, 1, 0])
    b = lb.next_batch()
    ids = [round(float(x.mean()) * 10) for x in b.images]
    assert b.groups.tolist() == [[0, 1, 1, 0][i] for i in ids]
    with pytest.raises(InvalidInput, match="taste groups"):
        PairBatches(images, pairs, width=16, pairs_per_batch=2, seed=0, groups=[0, 1])


def test_label_dropout_replaces_labels_by_the_null_label_at_its_rate() -> None:
    from encore.diffusion.training.objectives import drop_groups

    groups = torch.randint(0, 3, (4000,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    assert torch.equal(drop_groups(groups, 0.0, 3), groups)
    assert bool((drop_groups(groups, 1.0, 3) == 3).all())
    dropped = drop_groups(groups, 0.2, 3)
    changed = dropped != groups
    assert bool((dropped[changed] == 3).all())
    assert 0.17 < float(changed.float().mean()) < 0.23
    assert drop_groups(None, 0.2, 3) is None
    with pytest.raises(InvalidInput):
        drop_groups(groups, 1.5, 3)


def test_a_conditioned_dpo_fine_tune_learns_opposite_tastes_per_group(tiny_model, tmp_path) -> None:
    from encore.diffusion.preference import Conditioning, PreferenceConfig, preference_finetune
    from tests.diffusion.test_preference import small_cfg, stripe_data

    images, pairs = stripe_data()
    # group 0 prefers rows to columns, group 1 the opposite: one unconditioned model cannot
    # serve both; a conditioned one can
    opposite = pairs + [(lo, w, 1.0) for w, lo, _ in pairs]
    groups = [0] * len(pairs) + [1] * len(pairs)
    cond = Conditioning(2, groups, dropout=0.2, embedding_lr_scale=30.0, record={"groups_id": 7})
    frozen = {k: v.clone() for k, v in tiny_model.denoiser.state_dict().items()}
    result = preference_finetune(tiny_model, images, pairs=opposite, cfg=small_cfg(20, lr=2e-4),
                                 pref=PreferenceConfig("dpo", dpo_beta=5000.0), out_dir=tmp_path / "run",
                                 conditioning=cond)
    loss0 = result.figures["train_dpo_loss"][0]
    assert loss0 == pytest.approx(math.log(2), abs=1e-6)  # the child starts as the parent
    assert all(torch.equal(v, frozen[k]) for k, v in tiny_model.denoiser.state_dict().items())
    child = load_model_folder(result.model_dir, device="cpu")
    assert child.denoiser.num_groups == 2
    assert child.meta["taste_groups"] == {"num_groups": 2, "null_label": 2, "dropout": 0.2,
                                          "embedding_lr_scale": 30.0, "examples_per_group": [4, 4, 0],
                                          "groups_id": 7}
    assert child.meta["training"]["conditioning"]["groups_id"] == 7
    assert result.summary()["conditioning"] == child.meta["taste_groups"]
    assert [e["group"] for e in child.meta["training"]["training_set"]] == groups
    emb = child.denoiser.unet.class_embedding.weight.detach()
    assert all(float(emb[g].abs().max()) > 0 for g in range(3))  # groups and (by dropout) null trained
    # the groups' implicit rewards now disagree as their listeners do: on "rows beat columns"
    # pairs, group 0's margin is the highest, group 1's the lowest, the null label's between
    from encore.diffusion.finetune import training_noise_scheduler
    from encore.diffusion.training.preference import TimestepRange, fixed_pairs, pair_figures

    tensors = [torch.as_tensor(images[k]).float()[None] / 127.5 - 1 for k in sorted(images)]
    sched = training_noise_scheduler(tiny_model)
    rows_first = [(w, lo, 1.0) for w, lo, _ in pairs]
    margins = {}
    for g in (0, 1, 2):
        fixed = fixed_pairs(tensors, rows_first, width=16, n=16, T=1000, timesteps=TimestepRange(0.7), seed=3,
                            groups=[g] * len(rows_first))
        ref = conditioned_denoiser(tiny_model.denoiser, 2).eval()
        margins[g] = pair_figures(child.denoiser, ref, fixed, sched, beta=5000.0, use_bf16=False)["margin"]
    assert margins[0] > margins[2] > margins[1]


def test_the_group_embedding_gets_its_own_learning_rate(tiny_model) -> None:
    from encore.diffusion.training.loop import param_groups

    child = conditioned_denoiser(tiny_model.denoiser, 2)
    groups = param_groups(child, (("unet.class_embedding.", 30.0),))
    assert [g["lr_scale"] for g in groups] == [1.0, 30.0]
    assert groups[1]["params"] == [child.unet.class_embedding.weight]
    assert sum(len(g["params"]) for g in groups) == len(list(child.parameters()))
    assert param_groups(child, ()) == [{"params": list(child.parameters())}]


def test_a_conditioned_kto_fine_tune_and_bad_conditioning(tiny_model, tmp_path) -> None:
    from encore.diffusion.preference import Conditioning, PreferenceConfig, preference_finetune
    from tests.diffusion.test_preference import small_cfg, stripe_data

    images, pairs = stripe_data()
    labels = [(w, True, 1.0) for w, _, _ in pairs] + [(lo, False, 1.0) for _, lo, _ in pairs]
    result = preference_finetune(tiny_model, images, labels=labels, cfg=small_cfg(4, lr=2e-4),
                                 pref=PreferenceConfig("kto", kto_beta=5000.0), out_dir=tmp_path / "kto",
                                 conditioning=Conditioning(3, [0, 1, 2, 0, 1, 2, 0, 1], dropout=0.0))
    assert result.figures["train_kto_loss"][0] == pytest.approx(0.5, abs=1e-6)
    child = load_model_folder(result.model_dir, device="cpu")
    assert child.denoiser.num_groups == 3
    # without label dropout the null label is never trained: it stays the parent's (zero)
    assert float(child.denoiser.unet.class_embedding.weight[3].detach().abs().max()) == 0.0
    with pytest.raises(InvalidInput, match="taste groups"):
        preference_finetune(tiny_model, images, labels=labels, cfg=small_cfg(1), out_dir=tmp_path / "x",
                            pref=PreferenceConfig("kto"), conditioning=Conditioning(2, [0, 1]))
    with pytest.raises(InvalidInput, match="outside"):
        Conditioning(2, [0, 3])
    with pytest.raises(InvalidInput, match="dropout"):
        Conditioning(2, [0, 1], dropout=1.5)
