"""Muon/AdamW routing and the warmup-stable-decay schedule."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import one_torch_thread  # noqa: E402,F401 (autouse)
from textbook.mu.config import preset  # noqa: E402
from textbook.mu.lora import apply_lora  # noqa: E402
from textbook.mu.model import Mu  # noqa: E402
from textbook.mu.muon import Muon, bf16_is_native  # noqa: E402
from textbook.mu.optim import build_optimizers, route_parameters, set_lr, wsd  # noqa: E402


def test_hidden_matrices_go_to_muon_everything_else_to_adamw():
    model = Mu(preset("mu-tiny"))
    routes = route_parameters(model)
    muon = {name for name, _ in routes["muon"]}
    adamw = {name for name, _ in routes["adamw"]}
    assert not muon & adamw
    assert muon | adamw == {name for name, _ in model.named_parameters()}  # every parameter routed once
    assert "embed.weight" in adamw  # the shared embedding is also the output head
    assert all(".weight" in n and ("proj" in n or ".up." in n or ".down." in n) for n in muon)
    assert all(p.ndim == 2 for _, p in routes["muon"])
    assert all(n == "embed.weight" or "norm" in n for n in adamw)  # norms (and biases, if any) stay with AdamW
    assert "encoder_layers.0.attn.q_proj.weight" in muon and "decoder_layers.0.cross_attn.v_proj.weight" in muon
    assert len(muon) == 2 * (4 + 2) + 1 * (4 + 4 + 2)  # per layer: attention q/k/v/o (x2 in the decoder) and MLP up/down


def test_lora_factors_go_to_adamw_and_frozen_weights_nowhere():
    model = Mu(preset("mu-tiny"))
    apply_lora(model, rank=2)
    routes = route_parameters(model)
    assert routes["muon"] == []
    assert routes["adamw"] and all("lora_" in name for name, _ in routes["adamw"])


def test_build_optimizers_uses_torch_muon_and_adamw():
    model = Mu(preset("mu-tiny"))
    muon, adamw = build_optimizers(model, lr=1e-3, weight_decay=0.1)
    assert isinstance(muon, Muon) and isinstance(adamw, torch.optim.AdamW)
    assert muon.param_groups[0]["ns_coefficients"] == (3.4445, -4.775, 2.0315)
    assert muon.param_groups[0]["momentum"] == 0.95 and muon.param_groups[0]["nesterov"]
    assert muon.param_groups[0]["ns_steps"] == 5
    assert build_optimizers(model, lr=1e-3, weight_decay=0.1, ns_steps=3)[0].param_groups[0]["ns_steps"] == 3
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1, 0.0]  # norms are not decayed
    assert set_lr([muon, adamw], 0.5) == 5e-4 and adamw.param_groups[1]["lr"] == 5e-4


def _muon_steps(cls, steps: int = 4, **kwargs) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(48, 32)), torch.nn.Parameter(torch.randn(16, 40))]  # tall and wide
    opt = cls(params, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    return [p.detach().clone() for p in params], opt


def test_muon_in_bf16_is_torch_muon_and_in_fp32_close_to_it():
    reference, torch_opt = _muon_steps(torch.optim.Muon)
    same, ours = _muon_steps(Muon, ns_dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(reference, same))  # torch's update rule, bit for bit
    close, _ = _muon_steps(Muon, ns_dtype=torch.float32)
    gap = max(float((a - b).abs().max()) for a, b in zip(reference, close))
    assert 0 < gap < 5e-3  # only the rounding of the Newton-Schulz matmuls differs
    state = torch_opt.state_dict()  # the optimizer state moves between the two (a checkpoint of either resumes)
    ours.load_state_dict(state)
    assert ours.state_dict()["state"][0].keys() == {"momentum_buffer"}


def test_muon_picks_bf16_only_where_the_device_has_it(monkeypatch):
    import textbook.mu.muon as muon_module

    calls = []
    real = muon_module.orthogonalise
    monkeypatch.setattr(muon_module, "orthogonalise", lambda *a: calls.append(a[-1]) or real(*a))
    _muon_steps(Muon, steps=1)
    assert calls == [torch.bfloat16 if bf16_is_native(torch.device("cpu")) else torch.float32] * 2
    monkeypatch.setattr(muon_module, "bf16_is_native", lambda device: False)
    calls.clear()
    _muon_steps(Muon, steps=1)
    assert calls == [torch.float32] * 2


def _spread_matrix(rows: int, cols: int) -> torch.Tensor:
    """A matrix whose singular values span 1 .. 1e-4, as a momentum's do: the small ones test the rounding."""
    torch.manual_seed(1)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, dtype=torch.float64))
    return (u * torch.logspace(0, -4, k, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize("shape", [(32, 128), (128, 32), (24, 72)])
def test_gram_newton_schulz_is_the_same_polynomial(shape, monkeypatch):
    import textbook.mu.muon as muon_module

    taken = []
    real = muon_module._gram_newton_schulz
    monkeypatch.setattr(muon_module, "_gram_newton_schulz", lambda *a: taken.append(a[0].shape) or real(*a))
    g = _spread_matrix(*shape)
    coefficients = (3.4445, -4.775, 2.0315)
    gram = muon_module.orthogonalise(g, coefficients, 5, 1e-7, torch.float32).double()
    assert taken == [(min(shape), max(shape))]  # the wide form, after the transpose of a tall matrix
    monkeypatch.setattr(muon_module, "GRAM_ASPECT", float("inf"))
    exact = muon_module.orthogonalise(g, coefficients, 5, 1e-7, torch.float64)  # the direct iteration
    bf16 = muon_module.orthogonalise(g, coefficients, 5, 1e-7, torch.bfloat16).double()  # torch.optim.Muon's
    assert len(taken) == 1

    def error(x: torch.Tensor) -> float:
        return float((x - exact).norm() / exact.norm())

    # Measured: 1e-4..4e-4 (the rounding of g persists; the direct fp32 form: ~5e-6), torch's bf16: 0.08..0.18
    assert error(gram) < 1e-3 and error(gram) < error(bf16) / 100
    # what Muon wants from it: singular values pulled up into Jordan's band (~0.7..1.2) from down to 1e-4
    singular = torch.linalg.svdvals(gram)
    assert float(singular.max()) < 1.3 and float(singular[: min(shape) // 2].min()) > 0.6


def test_square_matrices_and_bf16_keep_the_direct_form(monkeypatch):
    import textbook.mu.muon as muon_module

    monkeypatch.setattr(muon_module, "_gram_newton_schulz", lambda *a: pytest.fail("Gram form taken"))
    coefficients = (3.4445, -4.775, 2.0315)
    muon_module.orthogonalise(_spread_matrix(64, 64), coefficients, 5, 1e-7, torch.float32)
    muon_module.orthogonalise(_spread_matrix(32, 128), coefficients, 5, 1e-7, torch.bfloat16)


def test_encoder_lr_scale_slows_the_embedding_and_encoder_only():
    model = Mu(preset("mu-tiny"))
    optimizers = build_optimizers(model, lr=1e-3, weight_decay=0.1, encoder_lr_scale=0.25)
    assert set_lr(optimizers, 0.5) == 5e-4  # the log shows the peak group's rate
    rate = {id(p): g["lr"] for opt in optimizers for g in opt.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        reads_the_query = name.startswith(("embed.", "encoder_layers.", "encoder_norm."))
        assert rate[id(param)] == pytest.approx(1.25e-4 if reads_the_query else 5e-4), name
    steps = Muon, torch.optim.AdamW
    assert [type(o) for o in optimizers] == list(steps)
    assert len(rate) == sum(1 for _ in model.parameters())  # every parameter in exactly one group


def test_wsd_values():
    total, warmup = 100, 10  # decay over the last 20 steps (default fraction 0.2)
    values = [wsd(s, total, warmup) for s in range(total)]
    assert values[0] == pytest.approx(0.1) and values[4] == pytest.approx(0.5) and values[9] == 1.0
    assert values[10:80] == [1.0] * 70
    assert values[80] == 1.0 and values[90] == pytest.approx(0.5) and values[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(values[80:], values[81:]))
    assert wsd(50, 100, 10, decay_fraction=0.5) == 1.0 and wsd(75, 100, 10, decay_fraction=0.5) == pytest.approx(0.5)
    short = [wsd(s, 10, 100, decay_fraction=0.2) for s in range(10)]  # warmup longer than the run: no jump up
    assert short == pytest.approx([(s + 1) / 100 for s in range(10)])


def test_wsd_sqrt_cooldown_leaves_the_peak_faster_than_linear():
    total, warmup = 100, 10
    linear = [wsd(s, total, warmup, 0.5) for s in range(total)]
    sqrt = [wsd(s, total, warmup, 0.5, shape="sqrt") for s in range(total)]
    assert sqrt[:50] == linear[:50] and sqrt[50] == 1.0
    assert sqrt[75] == pytest.approx(1 - 0.5 ** 0.5) and linear[75] == pytest.approx(0.5)  # halfway through the decay
    assert all(a >= b for a, b in zip(sqrt[50:], sqrt[51:])) and 0 < sqrt[99] < 0.05
    assert all(s <= l + 1e-12 for s, l in zip(sqrt[51:], linear[51:]))  # 1 - sqrt(p) <= 1 - p


def test_train_config_rejects_numbers_out_of_range():
    from textbook.errors import TextbookError
    from textbook.mu.trainconfig import TrainConfig

    for bad, message in (({"decay_fraction": 1.5}, "from 0 to 1"), ({"lr": 0.0}, "--lr must be positive"),
                         ({"batch_size": 0}, "--batch-size must be positive"), ({"bpe_dropout": 1.0}, "below 1"),
                         ({"max_minutes": 10, "decay_fraction": 1.0}, "below 1"), ({"decay_shape": "cosine"}, "linear or sqrt"),
                         ({"warmup_steps": -1}, "at least 0"), ({"muon_ns_steps": 0}, "Newton-Schulz iterations from 1")):
        with pytest.raises(TextbookError, match=message):
            TrainConfig(**bad)
    assert TrainConfig(decay_fraction=1.0, decay_shape="sqrt").decay_fraction == 1.0  # a step-count run may decay all the way


def _time_boxed_run(seconds_per_step, budget_s: float = 870.0, rates: list | None = None) -> tuple[int, float]:
    """Steps a simulated clock through a time-boxed run; returns (steps, seconds) it ends at, and appends each
    step's learning-rate multiplier to `rates`."""
    from textbook.mu.train import _TimeBox

    box = _TimeBox(budget_s, 0.6, cap=100_000, start=0.0, first=0, since=(0, 0.0))
    total, now, step = 100_000, 0.0, 0
    while step < total:
        if rates is not None:
            rates.append(wsd(step, total, 10, 0.6, anchor=box.anchor))
        now += seconds_per_step(step)
        step += 1
        total = box.fit(step, total, now, log_every=10)
    return total, now


def test_time_box_ends_inside_its_budget_and_uses_most_of_it():
    steps, seconds = _time_boxed_run(lambda step: 2.0 if step < 10 else 1.6)  # slow first steps
    assert 0.95 * 870 < seconds <= 870
    assert steps > 515


def test_time_box_pace_is_not_cut_short_by_one_slow_window():
    # One slow window (a validation, long batches) just before the decay began used to set the pace
    # alone: 476 steps instead of ~500.
    steps, seconds = _time_boxed_run(lambda step: 3.0 if 180 <= step < 190 else (2.0 if step < 10 else 1.6))
    assert steps > 490 and seconds <= 870


@pytest.mark.parametrize("pace", [lambda step: 2.8 if step < 90 else 1.9,  # a busy machine at the start, then free
                                  lambda step: 1.5 if step < 90 else 2.5])  # free, then busy
def test_time_box_moves_its_end_during_the_decay_without_a_jump(pace):
    # The end used to be fixed when the decay began (40% of the run at --decay-fraction 0.6): a run whose first
    # minutes were slow stopped at 594 of its 870 seconds. Now the decay is re-planned from where it stands.
    rates: list[float] = []
    steps, seconds = _time_boxed_run(pace, rates=rates)
    assert 0.95 * 870 < seconds <= 870
    after_warmup = rates[10:]
    assert all(b <= a + 1e-12 for a, b in zip(after_warmup, after_warmup[1:]))  # never rises again
    assert max(a - b for a, b in zip(after_warmup, after_warmup[1:])) < 3 / steps  # and never drops in a step
    assert rates[-1] < 0.02


def test_an_anchored_decay_starts_where_the_old_plan_stood():
    from textbook.mu.optim import decay_progress

    cool = decay_progress(60, 100, 0.5)  # 0.8 of the way up: 40 of 50 decay steps left
    assert cool == pytest.approx(0.8)
    assert wsd(60, 150, 0, 0.5, anchor=(60, cool)) == pytest.approx(0.8)  # the end moved to 150: no jump
    assert wsd(105, 150, 0, 0.5, anchor=(60, cool)) == pytest.approx(0.4)  # halfway to the new end
    assert wsd(30, 150, 0, 0.5, anchor=(60, cool)) == 1.0  # before the anchor, the plan it was made from
