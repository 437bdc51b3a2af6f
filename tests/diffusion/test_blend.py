"""Blends that keep every input (encore.diffusion.blend) and ``encore bench blend``, on tiny
seeded models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from encore.cli import main
from encore.diffusion.blend import blend, merge_mix, merge_mix_inverted, mix_images
from encore.diffusion.blend_bench import draw_blends, halfway_fraction
from encore.diffusion.engine import Engine
from encore.diffusion.folder import LoadedModel
from encore.diffusion.sampling import SampleParams, replay, vary
from encore.errors import InvalidInput

from ..songs import tone_file

H, W = 16, 32
TOP_DB = 80.0
SR = 22050


def _images(seed: int, batch: int = 1) -> torch.Tensor:
    """Smooth random spectrogram-like images in [-1, 1] whose maximum is 1 (as the codec's)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, H, W, generator=g) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    return (x - x.amax(dim=(1, 2, 3), keepdim=True) + 1).clamp(-1, 1)


def _band(lo: int, hi: int) -> torch.Tensor:
    """Loud (0 dB) in mel rows lo..hi, silent (−80 dB) elsewhere."""
    x = torch.full((1, 1, H, W), -1.0)
    x[:, :, lo:hi] = 1.0
    return x


def test_mix_keeps_the_bands_of_both_inputs_at_their_weights() -> None:
    low, high = _band(0, 4), _band(12, 16)
    mixed = mix_images([low, high], None, TOP_DB)
    db = (mixed + 1) / 2 * TOP_DB - TOP_DB
    # equal mean power, equal weights: both bands at the top, the silence stays silent
    assert float(db[0, 0, 0:4].min()) == pytest.approx(0.0, abs=1e-4)
    assert float(db[0, 0, 12:16].min()) == pytest.approx(0.0, abs=1e-4)
    assert float(db[0, 0, 5:11].max()) < -70
    # weights 3:1 put the lighter input 10·log10(3) ≈ 4.8 dB down
    uneven = (mix_images([low, high], [3, 1], TOP_DB) + 1) / 2 * TOP_DB - TOP_DB
    assert float(uneven[0, 0, 13].mean()) == pytest.approx(-10 * math.log10(3), abs=0.01)
    # an average of grey levels would have put both bands at −40 dB: the power mix does not
    assert float(((low + high) / 2)[0, 0, 0, 0]) == 0.0


def test_mix_with_one_weight_is_that_input() -> None:
    a, b = _images(1), _images(2)
    assert torch.allclose(mix_images([a, b], [1, 0], TOP_DB), a, atol=1e-5)
    assert torch.allclose(mix_images([a, b], [0, 2], TOP_DB), b, atol=1e-5)


def test_mix_blend_uses_every_input(tiny_model: LoadedModel) -> None:
    a, b, c = _images(1), _images(2), _images(3)
    common = {"strength": 0.6, "steps": 10, "seed": 5}
    ab = merge_mix(tiny_model, [a, b], **common)
    ac = merge_mix(tiny_model, [a, c], **common)
    cb = merge_mix(tiny_model, [c, b], **common)
    assert not torch.allclose(ab.images, ac.images, atol=1e-3)  # changing b changes it
    assert not torch.allclose(ab.images, cb.images, atol=1e-3)  # changing a changes it
    # weights 1/0 and 0/1 are exactly that input's variation with the same seed
    only_a = merge_mix(tiny_model, [a, b], weights=[1, 0], **common)
    assert torch.allclose(only_a.images, vary(tiny_model, a, **common).images, atol=1e-6)
    only_b = merge_mix(tiny_model, [a, b], weights=[0, 1], **common)
    assert torch.allclose(only_b.images, vary(tiny_model, b, **common).images, atol=1e-6)
    assert ab.params.kind == "merge" and ab.params.method == "mix"
    assert ab.params.weights == (0.5, 0.5) and ab.params.strength == 0.6


def test_splice_puts_the_inputs_one_after_the_other(tiny_model: LoadedModel) -> None:
    from encore.diffusion.blend import splice_images

    low, high = _band(0, 4), _band(12, 16)
    spliced = (splice_images([low, high], [1, 3], TOP_DB, crossfade=4) + 1) / 2 * TOP_DB - TOP_DB
    # the first quarter of the frames is the first input, the rest the second
    assert float(spliced[0, 0, 0:4, :6].min()) > -1 and float(spliced[0, 0, 12:16, :6].max()) < -70
    assert float(spliced[0, 0, 12:16, 10:].min()) > -1 and float(spliced[0, 0, 0:4, 10:].max()) < -70
    a, b = _images(1), _images(2)
    assert torch.allclose(splice_images([a, b], [1, 0], TOP_DB), a, atol=1e-5)
    common = {"strength": 0.6, "steps": 10, "seed": 5, "method": "splice"}
    ab = blend(tiny_model, [a, b], **common)
    assert not torch.allclose(ab.images, blend(tiny_model, [a, _images(3)], **common).images,
                              atol=1e-3)
    only_b = blend(tiny_model, [a, b], weights=[0, 1], **common)
    assert torch.allclose(only_b.images, vary(tiny_model, b, strength=0.6, steps=10, seed=5).images,
                          atol=1e-6)
    assert ab.params.method == "splice"


def test_mix_inverted_blend_uses_every_input(tiny_model: LoadedModel) -> None:
    a, b, c = _images(1), _images(2), _images(3)
    common = {"strength": 0.6, "steps": 10}
    ab = merge_mix_inverted(tiny_model, [a, b], **common)
    assert not torch.allclose(ab.images, merge_mix_inverted(tiny_model, [a, c], **common).images,
                              atol=1e-3)
    assert not torch.allclose(ab.images, merge_mix_inverted(tiny_model, [c, b], **common).images,
                              atol=1e-3)
    # with weight 0 an input plays no part at all
    only_a = merge_mix_inverted(tiny_model, [a, b], weights=[1, 0], **common)
    also_a = merge_mix_inverted(tiny_model, [a, c], weights=[1, 0], **common)
    assert torch.equal(only_a.images, also_a.images)
    assert ab.params.method == "mix-inverted" and ab.params.start_step == 4


def test_mix_inverted_with_one_weight_reconstructs_that_input(make_tiny) -> None:  # type: ignore[no-untyped-def]
    from tests.diffusion.test_engine_sampling import _oracle_model

    model, mu = _oracle_model(make_tiny)  # a denoiser whose DDIM inversion is exact in the limit
    g = torch.Generator().manual_seed(12)
    a, b = ((mu + 0.3 * torch.randn(1, 1, H, W, generator=g)).clamp(-1, 1) for _ in range(2))
    a, b = a - a.max() + 1, b - b.max() + 1  # the codec's images peak at 1 (the mix's reference)
    errors = {
        steps: float((merge_mix_inverted(model, [a, b], weights=[1, 0], strength=0.6,
                                         steps=steps).images - a).abs().max())
        for steps in (25, 100)
    }
    # measured: max error 0.10 at 25 steps, 0.027 at 100 (first order, as the full inversion)
    assert errors[100] < 0.04
    assert errors[100] < errors[25] / 2.5
    both = merge_mix_inverted(model, [a, b], weights=[3, 1], strength=0.6, steps=25).images
    assert (both - a).abs().mean() < (both - b).abs().mean()  # the heavier input dominates


@pytest.mark.parametrize("method", ["mix", "mix-inverted", "splice"])
def test_blends_replay_bit_for_bit(tiny_model: LoadedModel, method: str) -> None:
    xs = [_images(s, batch=2) for s in (4, 5, 6)]
    out = blend(tiny_model, xs, method=method, weights=[0.5, 0.3, 0.2], strength=0.7, steps=6,
                seed=[1, 2], input_ids=["a", "b", "c"])
    assert out.images.shape == (2, 1, H, W)
    again = replay(tiny_model, SampleParams.from_dict(out.params.to_dict()), xs)
    assert torch.equal(out.images, again.images)
    assert SampleParams.from_dict({**out.params.to_dict()}).method == method


def test_old_merge_params_without_a_method_still_replay(tiny_model: LoadedModel) -> None:
    xs = [_images(7), _images(8)]
    out = blend(tiny_model, xs, method="slerp", steps=4)
    d = out.params.to_dict()
    d.pop("method")  # params recorded before blends had methods
    assert torch.equal(replay(tiny_model, SampleParams.from_dict(d), xs).images, out.images)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"weights": [1, -1]}, "non-negative"),
        ({"weights": [float("nan"), 1]}, "non-negative"),
        ({"weights": [0, 0]}, "sum to 0"),
        ({"weights": [1, 2, 3]}, "3 weights"),
        ({"strength": None}, "needs a strength"),
        ({"strength": 1.5}, "1.5"),
        ({"method": "average"}, "unknown merge method 'average'"),
        ({"method": "slerp"}, "no strength"),
    ],
)
def test_bad_blend_arguments_are_named(
    tiny_model: LoadedModel, kwargs: dict, needle: str
) -> None:
    args = {"method": "mix", "strength": 0.5, "steps": 4, **kwargs}
    with pytest.raises(InvalidInput, match=needle):
        blend(tiny_model, [_images(1), _images(2)], **args)


def _song(path: Path, freq: float, seconds: float = 4.0) -> Path:
    return tone_file(path, freq, seconds, tremolo_hz=3.0, sr=SR)


def test_engine_blend_with_a_strength_and_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    a, b = _song(tmp_path / "a.wav", 220), _song(tmp_path / "b.wav", 1760)
    common = {"seconds": 0.8, "seed": 3, "steps": 6, "strength": 0.5, "sampler": "dpmpp",
              "method": "mix"}
    only_a = engine.merge([a, b], [1, 0], **common)
    var_a = engine.vary(a, 0.5, 3, 6, seconds=0.8, sampler="dpmpp")
    assert np.allclose(only_a.audio, var_a.audio, atol=1e-4)
    both = engine.merge([a, b], None, **common)
    assert not np.allclose(both.audio, var_a.audio, atol=1e-3)
    assert both.params["method"] == "mix" and both.params["strength"] == 0.5
    assert both.params["sampler"] == "dpmpp" and len(both.params["offsets"]) == 2
    # a strength and no method: the default, mix-inverted (DDIM both ways)
    default = engine.merge([a, b], [1, 0], seconds=0.8, steps=6, strength=0.5)
    assert default.params["method"] == "mix-inverted" and default.params["sampler"] == "ddim"
    # no strength: the original SLERP merge, as before
    old = engine.merge([a, b], None, seconds=0.8, steps=3)
    assert old.params["method"] is None and old.params["strength"] is None


def test_engine_refuses_bad_weights_before_reading_the_songs(tiny_model_dir: Path) -> None:
    engine = Engine(tiny_model_dir, device="cpu")
    with pytest.raises(InvalidInput, match="non-negative"):
        engine.merge(["/no/such/a.wav", "/no/such/b.wav"], [-1, 2], strength=0.5)


def test_halfway_fraction_and_the_draw() -> None:
    assert halfway_fraction("embedding", 0.6, 0.8, 0.4) == pytest.approx(0.5)
    assert halfway_fraction("chroma", 0.4, 0.8, 0.4) == pytest.approx(0.0)
    # the envelope is a distance: closer to the input is smaller
    assert halfway_fraction("envelope", 4.0, 2.0, 10.0) == pytest.approx(0.75)
    assert halfway_fraction("embedding", 0.6, 0.4, 0.5) is None  # no yardstick
    blends = draw_blends(10, 4, seed=1)
    assert blends == draw_blends(10, 4, seed=1)
    pairs = [(a, b) for a, b, _, _ in blends]
    assert len({x for p in pairs for x in p}) == 8  # disjoint pairs while there are songs
    for a, b, ua, ub in blends:
        assert a != b and {ua, ub}.isdisjoint({a, b})
    with pytest.raises(InvalidInput, match="at least 3 songs"):
        draw_blends(2, 1, seed=0)


def test_bench_blend_runs_on_a_tiny_model(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    for i, f in enumerate((220, 440, 880, 1320)):
        _song(songs / f"s{i}.wav", f)
    (songs / "notes.txt").write_text("not a song")
    code = main(["bench", "blend", "--model", str(tiny_model_dir), "--songs", str(songs),
                 "--n", "2", "--seconds", "0.8", "--strength", "0.5",
                 "--methods", "slerp", "mix", "--merge-steps", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 blends of 2 songs from 4" in out and "load average" in out
    for method in ("slerp", "mix"):
        for metric in ("embedding", "chroma", "envelope"):
            assert any(line.split()[:2] == [method, metric] for line in out.splitlines()), out
        assert f"{method:<13} all three:" in out


def test_bench_blend_names_a_bad_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "blend", "--songs", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_cli_method_names_are_the_engine_s() -> None:
    from encore.commands.generate import MERGE_METHODS as CLI_METHODS
    from encore.diffusion.blend import MERGE_METHODS

    assert CLI_METHODS == MERGE_METHODS


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--weights", "1", "-1"], "-1.0"),
        (["--weights", "1", "nan"], "nan"),
        (["--weights", "0", "0"], "at least one must be above 0"),
        (["--weights", "1", "2", "3"], "3 weights for 2 songs"),
        (["--method", "slerp", "--strength", "0.5"], "no strength"),
        (["--method", "average"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_blend_arguments_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    a, b = _song(tmp_path / "a.wav", 220), _song(tmp_path / "b.wav", 440)
    # the model folder does not exist: an error about it would mean the model was looked at first
    args = ["generate", "--model", str(tmp_path / "later"), "--out", str(tmp_path / "o.wav"),
            "--from", str(a), str(b), *extra]
    if needle == "invalid choice":  # argparse's own refusal
        with pytest.raises(SystemExit):
            main(args)
    else:
        assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "later" not in err


def test_cli_blend_with_strength_and_weights(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    a, b = _song(tmp_path / "a.wav", 220), _song(tmp_path / "b.wav", 1760)
    common = ["generate", "--no-progress", "--model", str(tiny_model_dir), "--seconds", "0.8",
              "--steps", "4", "--from", str(a), str(b)]
    assert main([*common, "--out", str(tmp_path / "m.wav"), "--weights", "3", "1",
                 "--strength", "0.6"]) == 0
    params = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert params["kind"] == "merge" and params["method"] == "mix-inverted"
    assert params["weights"] == [0.75, 0.25] and params["strength"] == 0.6
    assert main([*common, "--out", str(tmp_path / "s.wav"), "--method", "slerp"]) == 0
    params = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert params["method"] is None and params["strength"] is None and params["sampler"] == "ddim"
