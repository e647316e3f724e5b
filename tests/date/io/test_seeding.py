import torch

from date.io.seeding import image_generator, image_seed


def test_every_seed_and_index_gets_its_own_noise():
    seeds = {image_seed(seed, index) for seed in range(20) for index in range(5000)}
    assert len(seeds) == 20 * 5000  # no two (seed, index) pairs share a generator
    noise = [torch.randn(8, generator=image_generator(seed, 3)) for seed in (1, 2, 3)]
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[1], noise[2])


def test_the_same_seed_and_index_give_the_same_noise():
    assert torch.equal(torch.randn(8, generator=image_generator(6, 41)), torch.randn(8, generator=image_generator(6, 41)))


def test_copies_of_a_caption_get_their_own_noise_and_copy_0_is_the_single_image():
    seeds = {image_seed(seed, (index, copy)) for seed in (0, 1, 2, 670) for index in (0, 1, 275, 100_002)
             for copy in range(64)}
    assert len(seeds) == 4 * 4 * 64
    assert image_seed(6, (41, 0)) == image_seed(6, 41)
