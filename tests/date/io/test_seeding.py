import torch

from date.io.seeding import image_generator, image_seed


def test_every_seed_and_index_gets_its_own_noise():
    seeds = {image_seed(seed, index) for seed in range(20) for index in range(5000)}
    assert len(seeds) == 20 * 5000  # no two (seed, index) pairs share a generator
    noise = [torch.randn(8, generator=image_generator(seed, 3)) for seed in (1, 2, 3)]
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[1], noise[2])


def test_the_same_seed_and_index_give_the_same_noise():
    assert torch.equal(torch.randn(8, generator=image_generator(6, 41)), torch.randn(8, generator=image_generator(6, 41)))
