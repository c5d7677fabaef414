"""Mu model: masks, RoPE, GQA, tied weights, Dual LayerNorm, KV-cache decoding, preset sizes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import one_torch_thread  # noqa: E402,F401 (autouse)
from torch import nn  # noqa: E402

from textbook.mu.config import PRESETS, MuConfig, preset  # noqa: E402
from textbook.mu.model import Mu, SelfAttention, apply_rope, attend, count_parameters  # noqa: E402


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return Mu(preset("mu-tiny")).eval()


def test_mu_330m_lands_on_330m_with_two_thirds_in_the_encoder():
    cfg = preset("mu-330m")
    counts = count_parameters(cfg)  # on the meta device: nothing allocated
    assert (cfg.n_encoder_layers, cfg.n_decoder_layers) == (32, 12)
    assert abs(counts["total"] - 330e6) / 330e6 < 0.03
    assert cfg.n_kv_heads < cfg.n_heads  # grouped-query attention
    # about 2/3 in the encoder: 60% in its layers, 72% with the shared embedding it reads
    assert 0.58 < counts["encoder"] / counts["total"] < 0.75
    assert counts["total"] == counts["embedding"] + counts["encoder"] + counts["decoder"] + 2 * cfg.d_model


def test_math_attention_kernel_on_cpu_gives_the_same_model(model):
    from textbook.mu.model import attention_kernels

    src, tgt = torch.randint(3, 500, (3, 7)), torch.randint(3, 500, (3, 5))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    ref = model(src, mask, tgt)
    with attention_kernels(torch.device("cpu")):
        assert torch.allclose(model(src, mask, tgt), ref, atol=1e-5)


def test_mu_small_is_20_to_40m():
    assert 20e6 <= count_parameters(preset("mu-small"))["total"] <= 40e6


def test_no_decoder_position_sees_the_future(model):
    src = torch.randint(3, 500, (2, 7))
    tgt = torch.randint(3, 500, (2, 9))
    changed = tgt.clone()
    changed[:, 5:] = torch.randint(3, 500, (2, 4))
    a, b = model(src, None, tgt), model(src, None, changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)


def test_padding_is_never_attended(model):
    src = torch.randint(3, 500, (1, 5))
    tgt = torch.randint(3, 500, (1, 4))
    padded = torch.cat([src, torch.randint(3, 500, (1, 6))], dim=1)  # junk where the padding is
    mask = torch.tensor([[True] * 5 + [False] * 6])
    ref = model(src, None, tgt)
    out = model(padded, mask, tgt)
    assert torch.allclose(ref, out, atol=1e-5)  # decoder (cross-attention) unaffected
    assert torch.allclose(model.encode(src)[:, :5], model.encode(padded, mask)[:, :5], atol=1e-5)  # encoder too


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    cfg = preset("mu-tiny")
    rope = Mu(cfg).rope
    q, k = torch.randn(1, 1, 1, cfg.head_dim), torch.randn(1, 1, 1, cfg.head_dim)

    def score(m: int, n: int) -> float:
        cq, sq = rope(torch.tensor([m]))
        ck, sk = rope(torch.tensor([n]))
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-5)
    assert score(7, 7) == pytest.approx(score(0, 0), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_gqa_equals_multi_head_attention_when_groups_equal_heads():
    torch.manual_seed(0)
    cfg = MuConfig(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=4, d_ff=64, n_encoder_layers=1, n_decoder_layers=1)
    ours = SelfAttention(cfg)
    ref = nn.MultiheadAttention(32, 4, bias=False, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.out_proj.weight.copy_(ours.o_proj.weight)
    x = torch.randn(2, 6, 32)
    no_rotation = torch.ones(6, cfg.head_dim // 2), torch.zeros(6, cfg.head_dim // 2)
    expected, _ = ref(x, x, x, need_weights=False)
    assert torch.allclose(ours(x, *no_rotation), expected, atol=1e-5)


def test_gqa_shares_each_kv_head_with_its_group():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mha = attend(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1))  # every query head given its K/V explicitly
    assert torch.allclose(attend(q, k, v), mha, atol=1e-6)


def test_one_shared_embedding_for_encoder_decoder_and_head(model):
    weights = [p for p in model.parameters() if p.shape[0] == model.cfg.vocab_size]
    assert len(weights) == 1 and weights[0] is model.embed.weight
    h = torch.randn(1, 3, model.cfg.d_model)
    assert torch.allclose(model.logits(h), model.decoder_norm(h) @ model.embed.weight.T, atol=1e-5)
    assert list(model.state_dict()).count("embed.weight") == 1


def test_dual_layernorm_norms_inside_the_residual_branch(model):
    layer = model.encoder_layers[0]
    cos, sin = model.rope(torch.arange(4))
    x = torch.randn(1, 4, model.cfg.d_model)
    branch = lambda t: layer.attn_norm.post(layer.attn(layer.attn_norm.pre(t), cos, sin))  # noqa: E731
    # pre norm: the branch does not see the residual stream's scale
    assert torch.allclose(branch(x), branch(10 * x), atol=1e-4)
    # post norm: the update's scale does not depend on the sub-layer's weights
    with torch.no_grad():
        layer.attn.o_proj.weight.mul_(100)
        big = branch(x)
        layer.attn.o_proj.weight.mul_(10)
    assert torch.allclose(big, branch(x), atol=1e-4)
    with torch.no_grad():  # a zero post-norm gain removes the update entirely: the residual passes untouched
        layer.attn_norm.post.weight.zero_()
        layer.mlp_norm.post.weight.zero_()
    assert torch.equal(layer(x, cos, sin, None), x)
    dec = model.decoder_layers[0]
    assert {type(n).__name__ for n in (dec.self_norm.pre, dec.self_norm.post, dec.cross_norm.pre, dec.cross_norm.post,
                                       dec.mlp_norm.pre, dec.mlp_norm.post)} == {"LayerNorm"}


def test_kv_cache_steps_equal_teacher_forcing(model):
    src = torch.randint(3, 500, (2, 6))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    tgt = torch.randint(3, 500, (2, 7))
    full = model(src, mask, tgt)
    cross_k, cross_v = model.cross_kv(model.encode(src, mask))
    k_cache, v_cache = model.empty_cache(2)
    assert k_cache.shape == (1, 2, 2, model.cfg.max_target_len, model.cfg.head_dim)
    for pos in range(7):
        logits, k_cache, v_cache = model.decode_step(tgt[:, pos : pos + 1], torch.tensor([pos]), k_cache, v_cache, cross_k, cross_v, mask)
        assert torch.allclose(logits, full[:, pos], atol=1e-5)


def test_presets_build_and_unknown_preset_errors():
    from textbook.errors import TextbookError

    assert set(PRESETS) == {"mu-tiny", "mu-small", "mu-330m"}
    with pytest.raises(TextbookError, match="unknown preset"):
        preset("mu-huge")
