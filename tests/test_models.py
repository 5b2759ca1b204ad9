"""Tests of metagen_utils.models: shapes, fixed features, and that every model runs under vmapped MAML."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metagen_utils.errors import ConfigError
from metagen_utils.meta.maml import MetaConfig, TaskBatch, check_vectorisable, init_meta_params, meta_step
from metagen_utils.models import ConvGenerator, CoordMLP, FourierFeatures, LinearMetaNet


def test_linear_meta_net_computes_w_x_plus_b_with_parameters_named_weight_and_bias():
    net = LinearMetaNet(3, 2)
    assert [n for n, _ in net.named_parameters()] == ["weight", "bias"]
    x = torch.randn(5, 3)
    torch.testing.assert_close(net(x), x @ net.weight.T + net.bias)


def test_fourier_features_are_cos_and_sin_of_a_fixed_seeded_projection():
    features = FourierFeatures(num_features=16, scale=4.0, seed=3)
    assert list(dict(features.named_parameters())) == [] and features.B.shape == (16, 2)
    assert "B" in dict(features.named_buffers())
    torch.testing.assert_close(features.B, FourierFeatures(16, 4.0, seed=3).B)
    assert not torch.equal(features.B, FourierFeatures(16, 4.0, seed=4).B)
    torch.testing.assert_close(FourierFeatures(16, 1.0, seed=3).B * 4.0, features.B)
    p = torch.rand(7, 2) * 2 - 1
    angle = 2 * math.pi * p @ features.B.T
    torch.testing.assert_close(features(p), torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1))


def test_coords_are_row_major_pixel_positions_spanning_minus_one_to_one():
    grid = FourierFeatures.coords(height=3, width=4)
    assert grid.shape == (12, 2)
    torch.testing.assert_close(grid[0], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(grid[-1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(grid[1], torch.tensor([-1 / 3, -1.0]))   # u (column) varies fastest
    torch.testing.assert_close(grid.reshape(3, 4, 2)[2, 0], torch.tensor([-1.0, 1.0]))


def test_coord_mlp_maps_coordinates_to_values_and_its_context_changes_the_output():
    net = CoordMLP(2, hidden=16, depth=3, out_features=3, activation="silu", context_dim=4)
    x = torch.rand(2, 10, 2)
    assert net(x).shape == (2, 10, 3)
    assert torch.equal(net.context, torch.zeros(4))
    before = net(x)
    with torch.no_grad():
        net.context += 1.0
    assert not torch.allclose(before, net(x))
    assert "context" not in dict(CoordMLP(2).named_parameters())
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 4


def test_coord_mlp_rejects_an_unknown_activation_naming_the_choices():
    with pytest.raises(ConfigError, match=r"activation='tanh'.*\['relu', 'silu'\]"):
        CoordMLP(2, activation="tanh")


@pytest.mark.parametrize("image_size", [28, 32])
def test_conv_generator_outputs_images_of_the_requested_size_in_the_open_unit_interval(image_size):
    generator = ConvGenerator(latent_dim=32, channels=1, image_size=image_size)
    images = generator(torch.randn(5, 32))
    assert images.shape == (5, 1, image_size, image_size)
    assert images.min() > 0 and images.max() < 1
    assert generator.net[0].out_features == 64 * (image_size // 4) ** 2


def test_conv_generator_rejects_an_image_size_not_divisible_by_4():
    with pytest.raises(ConfigError, match=r"image_size=30; expected a positive multiple of 4"):
        ConvGenerator(image_size=30)


def test_conv_generator_has_no_batchnorm_and_takes_a_vmapped_maml_step():
    torch.manual_seed(0)
    generator = ConvGenerator(latent_dim=32, channels=1, image_size=28)
    check_vectorisable(generator)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in generator.modules())
    batch = TaskBatch(torch.randn(2, 2, 32), torch.rand(2, 2, 1, 28, 28), torch.randn(2, 2, 32),
                      torch.rand(2, 2, 1, 28, 28))
    cfg = MetaConfig("maml", inner_steps=1, inner_lr=0.5)
    meta_params = init_meta_params(generator, cfg)
    before = generator.net[0].weight.detach().clone()
    loss = meta_step(generator, meta_params, torch.optim.Adam(meta_params.values(), lr=1e-3), batch, cfg,
                     F.binary_cross_entropy, vectorised=True)
    assert math.isfinite(loss) and loss > 0
    assert not torch.equal(generator.net[0].weight, before)
